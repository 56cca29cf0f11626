"""The schema is built by the migrations (conftest runs them), so it must match the
models exactly: a model change without a migration fails here."""

import warnings

import flask_migrate
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from crm.db import db


def test_migrations_match_the_models(app):
    with app.app_context(), db.engine.connect() as conn, warnings.catch_warnings():
        # SQLite's dialect cannot reflect expression indexes; PostgreSQL's compares them.
        warnings.simplefilter("ignore")
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, db.metadata)
    assert diff == []


def test_downgrade_to_nothing_and_up_again(app):
    with app.app_context(), warnings.catch_warnings():
        # SQLite rebuilds tables to drop columns and cannot reflect expression indexes.
        warnings.simplefilter("ignore")
        flask_migrate.downgrade(revision="base")
        assert db.inspect(db.engine).get_table_names() in ([], ["alembic_version"])
        flask_migrate.upgrade()
        assert "customers" in db.inspect(db.engine).get_table_names()
        if db.engine.dialect.name == "sqlite":  # expression indexes survive the rebuilds
            names = set(db.session.scalars(text(
                "SELECT name FROM sqlite_master WHERE type = 'index'")))
            db.session.rollback()
            assert {"ix_customers_last_name_lower", "ix_customers_first_name_lower",
                    "ix_customer_identifiers_fragment"} <= names
