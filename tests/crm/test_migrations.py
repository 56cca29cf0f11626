"""The schema is built by the migrations (conftest runs them), so it must match the
models exactly: a model change without a migration fails here."""

import warnings

import flask_migrate
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from crm.db import db


def test_migrations_match_the_models(app):
    with app.app_context(), db.engine.connect() as conn, warnings.catch_warnings():
        # SQLite's dialect cannot reflect expression indexes; PostgreSQL's compares them.
        warnings.simplefilter("ignore")
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, db.metadata)
    assert diff == []


def test_downgrade_to_nothing_and_up_again(app):
    with app.app_context():
        flask_migrate.downgrade(revision="base")
        assert db.inspect(db.engine).get_table_names() in ([], ["alembic_version"])
        flask_migrate.upgrade()
        assert "customers" in db.inspect(db.engine).get_table_names()
