"""Fixtures: one app per test process with its schema built by running the migrations,
on SQLite (default) or PostgreSQL (DATABASE_URL=postgresql+psycopg://...; each xdist
worker makes and drops its own database). Every test starts from empty tables."""

from __future__ import annotations

import contextvars
import os
import threading
from collections.abc import Iterator
from typing import Any

import flask_migrate
import psycopg
import pytest
from flask import Flask, has_app_context
from flask.testing import FlaskClient
from sqlalchemy import make_url, text
from werkzeug.serving import make_server

from campaigns import date_jobs, hooks, surveys
from crm import create_app, intrusion, key_usage, keys, pii
from crm.db import db, write_intent
from crm.limits import limiter
from loyalty import referrals, settings
from tests.factories import Factory
from tests.helpers import Till

# One key ring for the run, in the environment as a secret store would give it, so that
# every app and every process the tests start (flask commands, gunicorn) opens the same
# sealed values. tests/crm/test_pii.py tries the instance's key file.
os.environ.setdefault("PII_KEYS", f"t1:{pii.new_key()}")
os.environ.setdefault("PII_INDEX_KEY", pii.new_key())


def _postgres_database(url: str, worker: str) -> tuple[str, str]:
    """Create a fresh database for this worker; return its URL and name."""
    parsed = make_url(url)
    name = f"{parsed.database}_{worker}"
    admin = parsed.set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False
    )
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return parsed.set(database=name).render_as_string(hide_password=False), admin


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Iterator[str]:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgresql"):
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'crm.db'}"
        return
    worker_url, admin = _postgres_database(url, worker_id)
    yield worker_url
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{make_url(worker_url).database}" WITH (FORCE)')


@pytest.fixture(scope="session")
def app(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    app = create_app({
        "TESTING": True,
        "DATABASE_URL": database_url,
        "INSTANCE_PATH": str(tmp_path_factory.mktemp("instance")),
        "RATELIMIT_DEFAULT": "100000 per minute",
        "LOG_LEVEL": "WARNING",
        "QUIET_HOURS": "",  # tests set quiet hours where they test them
    })
    with app.app_context():
        flask_migrate.upgrade()
    yield app
    with app.app_context():
        db.engine.dispose()


def _empty_tables(app: Flask) -> None:
    """Empty every table. The audit log refuses UPDATE, DELETE and TRUNCATE by trigger:
    here (tests only) the triggers are set aside and put back in the same transaction."""
    with app.app_context():
        tables = [t.name for t in db.metadata.sorted_tables]
        if db.engine.dialect.name == "postgresql":
            db.session.execute(text("ALTER TABLE audit_log DISABLE TRIGGER USER"))
            db.session.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
            db.session.execute(text("ALTER TABLE audit_log ENABLE TRIGGER USER"))
        else:
            triggers = db.session.execute(text(
                "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
                "AND tbl_name = 'audit_log'")).all()
            for name, _ in triggers:
                db.session.execute(text(f"DROP TRIGGER {name}"))
            for name in reversed(tables):
                db.session.execute(text(f"DELETE FROM {name}"))
            for _, sql in triggers:
                db.session.execute(text(sql))
        db.session.commit()


@pytest.fixture(autouse=True)
def _fresh_state(app: Flask) -> Iterator[None]:
    yield
    _empty_tables(app)
    limiter.reset()
    settings.forget()
    surveys.forget()
    date_jobs.forget()
    intrusion.forget()
    key_usage.forget()
    hooks.forget()
    referrals.forget()
    with app.app_context():
        keys.forget_callers()


class RequestClient(FlaskClient):
    """Each request runs as in production: in its own app context with its own database
    session, even while the test holds an app context (the ``factory`` fixture)."""

    def open(self, *args: Any, **kwargs: Any) -> Any:
        if has_app_context():
            db.session.rollback()  # the test's own reads start afresh after the request
        kwargs.setdefault("buffered", True)
        return contextvars.Context().run(super().open, *args, **kwargs)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    app.test_client_class = RequestClient
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> Any:
    return app.test_cli_runner()


@pytest.fixture
def factory(app: Flask) -> Iterator[Factory]:
    """Test data, and an app context so that the test can read the database. Its
    reads never take SQLite's write lock, so requests running meanwhile never wait."""
    with app.app_context():
        token = write_intent.set(False)
        yield Factory(app)
        write_intent.reset(token)


@pytest.fixture
def live_server(app: Flask) -> Iterator[str]:
    """The app served by a real threaded HTTP server, for concurrent requests."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()


@pytest.fixture
def program(factory):
    """A program in EUR: 1 point per euro, a point worth 0.01, no pending, 365-day expiry."""
    row = settings.update_program({"currency": "EUR"})
    db.session.commit()
    return row


@pytest.fixture
def till(client, factory, program) -> Till:
    store = factory.store("PAR01", currency="EUR", timezone="Europe/Paris")
    return Till(client, factory.headers("pos", store=store.code), store.code)


@pytest.fixture
def admin(factory) -> dict[str, str]:
    return factory.headers("admin")
