"""crm/sql.py: statements compiled from Core once, sent on the session's connection and
transaction (on PostgreSQL together, in one pipeline, when a result is read or the block
ends), and driver errors as SQLAlchemy's."""

from datetime import UTC, datetime

import psycopg
import pytest
from sqlalchemy import bindparam, event, select
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError

from crm.db import db
from crm.models import Store
from crm.sql import Sql, Statement, as_time

_S = Store.__table__
RENAME = Statement(_S.update().where(_S.c.code == bindparam("store_code")), columns=["name"])
NAME = Statement(select(_S.c.name).where(_S.c.code == bindparam("store_code")))
CREATED = Statement(select(_S.c.created_at).where(_S.c.id == bindparam("store_id")))
STAMP = Statement(_S.update().where(_S.c.id == bindparam("store_id")),
                  columns=["created_at"])
ADD = Statement(_S.insert(), columns=["code", "name", "timezone", "channel", "currency",
                                      "created_at"])


def _name(code):
    return db.session.scalar(select(Store.name).where(Store.code == code))


def _rename(sql, name, code="NYC01"):
    sql.run(RENAME, {"name": name, "store_code": code})


def test_a_statement_is_seen_by_the_next_reader_and_the_block_sends_what_waits(factory):
    factory.store("NYC01")
    with Sql() as sql:
        _rename(sql, "First")
        assert sql.run(NAME, {"store_code": "NYC01"}).one() == ("First",)
        _rename(sql, "Second")  # nothing reads it: leaving the block sends it
    assert _name("NYC01") == "Second"
    db.session.commit()
    assert _name("NYC01") == "Second"


def test_an_error_in_the_block_drops_what_waits(factory):
    factory.store("NYC01")
    with pytest.raises(ZeroDivisionError), Sql() as sql:
        _rename(sql, "Dropped")
        1 / 0  # noqa: B018
    db.session.rollback()
    assert _name("NYC01") == "Test store"


def test_statements_are_in_order_and_listeners_see_them(app, factory):
    factory.store("NYC01")
    seen = []

    def listen(conn, cursor, statement, *args):
        seen.append(statement.split()[0])

    event.listen(db.engine, "before_cursor_execute", listen)
    try:
        with Sql() as sql:
            for name in ("one", "two", "three"):
                _rename(sql, name)
            assert sql.run(NAME, {"store_code": "NYC01"}).scalar() == "three"
    finally:
        event.remove(db.engine, "before_cursor_execute", listen)
    db.session.rollback()
    assert [s for s in seen if s != "BEGIN"] == ["UPDATE", "UPDATE", "UPDATE", "SELECT"]


def test_times_go_in_aware_and_come_back_utc(factory):
    store = factory.store("NYC01")
    at = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
    with Sql() as sql:
        sql.run(STAMP, {"created_at": at, "store_id": store.id})
        assert as_time(sql.run(CREATED, {"store_id": store.id}).scalar()) == at
        with pytest.raises(ValueError, match="naive"):
            sql.run(STAMP, {"created_at": at.replace(tzinfo=None), "store_id": store.id})
    db.session.rollback()


def test_a_result_read_later_sees_the_writes_sent_before_it_only(factory):
    factory.store("NYC01")
    with Sql() as sql:
        _rename(sql, "Before")
        asked = sql.run(NAME, {"store_code": "NYC01"})
        _rename(sql, "After")
        assert asked.one() == ("Before",)  # read in its place, whenever it is read
        assert asked.all() == [("Before",)]
        assert sql.run(NAME, {"store_code": "nope"}).one() is None
    assert _name("NYC01") == "After"
    db.session.rollback()


def test_a_column_that_is_not_there_fails_when_the_statement_is_built():
    with pytest.raises(ArgumentError, match="no column no_such_column"):
        Statement(_S.update(), columns=["no_such_column"])


def test_driver_errors_are_sqlalchemy_errors(factory):
    factory.store("NYC01")
    row = {"code": "NYC01", "name": "Twice", "timezone": "UTC", "channel": "store",
           "currency": "USD", "created_at": datetime.now(UTC)}
    with pytest.raises(IntegrityError), Sql() as sql:
        sql.run(ADD, row)
        sql.send()
    db.session.rollback()
    assert _name("NYC01") == "Test store"


def test_a_lost_connection_is_an_operational_error_and_is_thrown_away(app, factory):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no connection to lose")
    factory.store("NYC01")
    sql = Sql()
    pid = sql.run(Statement(select(bindparam("x"))), {"x": 1}).scalar() and \
        sql.driver.info.backend_pid
    url = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(OperationalError) as caught:
        sql.run(NAME, {"store_code": "NYC01"}).one()
    assert caught.value.connection_invalidated
    db.session.rollback()
    assert _name("NYC01") == "Test store"  # a new connection from the pool
