from pathlib import Path

from sqlalchemy import text

from crm import create_app
from crm.config import database_uri
from crm.db import db


def test_sqlite_runs_with_wal_busy_timeout_and_foreign_keys(app):
    with app.app_context():
        if db.engine.dialect.name != "sqlite":
            return
        conn = db.session.connection()
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000


def test_database_url_forms(tmp_path):
    assert database_uri(None, tmp_path) == f"sqlite:///{tmp_path / 'crm.db'}"
    assert database_uri("sqlite:///instance/crm.db", tmp_path) == \
        f"sqlite:///{Path('instance/crm.db').resolve()}"
    assert database_uri("postgresql://u@h/db", tmp_path) == "postgresql+psycopg://u@h/db"
    assert database_uri("postgres://u@h/db", tmp_path) == "postgresql+psycopg://u@h/db"


def test_environment_configures_the_app(tmp_path, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("DEFAULT_REGION", "gb")
    monkeypatch.setenv("SCHEDULER_EMBEDDED", "1")
    monkeypatch.setenv("FEATURE_PACKAGES", "loyalty")
    app = create_app({"INSTANCE_PATH": str(tmp_path)})
    assert app.config["DEFAULT_REGION"] == "GB"
    assert app.config["SCHEDULER_EMBEDDED"] is True
    assert app.config["FEATURE_PACKAGES"] == ["loyalty"]
    assert app.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'crm.db'}"
    # The secret key is made once and kept in the instance folder.
    assert len(app.config["SECRET_KEY"]) > 40
    assert create_app({"INSTANCE_PATH": str(tmp_path)}).config["SECRET_KEY"] == \
        app.config["SECRET_KEY"]


def test_postgres_when_database_url_says_so(app):
    with app.app_context():
        assert db.session.execute(text("SELECT 1")).scalar() == 1
        assert db.engine.dialect.name in ("sqlite", "postgresql")
