"""crm/sql.py: hand-written statements in the session's transaction, and statements sent
later (on PostgreSQL, with the next one, in one pipeline)."""

from datetime import UTC, datetime

from sqlalchemy import event, select

from crm.db import db
from crm.models import Store
from crm.sql import Sql, as_time


def _name(code):
    return db.session.scalar(select(Store.name).where(Store.code == code))


def test_a_statement_sent_later_is_seen_by_the_next_reader_of_either_kind(factory):
    factory.store("NYC01")
    db.session.commit()
    sql = Sql()
    sql.later("UPDATE stores SET name = ? WHERE code = ?", ("Later", "NYC01"))
    assert sql.one("SELECT name FROM stores WHERE code = ?", ("NYC01",)) == ("Later",)
    sql.later("UPDATE stores SET name = ? WHERE code = ?", ("Later again", "NYC01"))
    assert _name("NYC01") == "Later again"  # an ORM query sends the queue first
    db.session.commit()
    assert _name("NYC01") == "Later again"


def test_the_commit_sends_what_waits_and_a_rollback_drops_it(factory):
    factory.store("NYC01")
    db.session.commit()
    sql = Sql()
    sql.many_later("UPDATE stores SET name = ? WHERE code = ?", [("Committed", "NYC01")])
    db.session.commit()  # nothing read it: the commit sends it
    assert _name("NYC01") == "Committed"
    Sql().later("UPDATE stores SET name = ? WHERE code = ?", ("Dropped", "NYC01"))
    db.session.rollback()
    assert _name("NYC01") == "Committed"
    db.session.commit()
    assert _name("NYC01") == "Committed"


def test_statements_are_in_order_and_listeners_see_them(app, factory):
    factory.store("NYC01")
    db.session.commit()
    seen = []

    def listen(conn, cursor, statement, *args):
        seen.append(statement.split()[0])

    event.listen(db.engine, "before_cursor_execute", listen)
    try:
        sql = Sql()
        for name in ("one", "two", "three"):
            sql.later("UPDATE stores SET name = ? WHERE code = ?", (name, "NYC01"))
        assert sql.one("SELECT name FROM stores WHERE code = ?", ("NYC01",)) == ("three",)
    finally:
        event.remove(db.engine, "before_cursor_execute", listen)
    db.session.rollback()
    assert [s for s in seen if s != "BEGIN"] == ["UPDATE", "UPDATE", "UPDATE", "SELECT"]


def test_times_go_in_aware_and_come_back_utc(factory):
    store = factory.store("NYC01")
    db.session.commit()
    at = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
    sql = Sql()
    sql.execute("UPDATE stores SET created_at = ? WHERE id = ?", (at, store.id))
    assert as_time(sql.one("SELECT created_at FROM stores WHERE id = ?", (store.id,))[0]) == at
    db.session.rollback()


def test_an_asked_query_sees_the_writes_queued_before_it(factory):
    factory.store("NYC01")
    db.session.commit()
    sql = Sql()
    sql.later("UPDATE stores SET name = ? WHERE code = ?", ("Before", "NYC01"))
    asked = sql.ask("SELECT name FROM stores WHERE code = ?", ("NYC01",))
    sql.later("UPDATE stores SET name = ? WHERE code = ?", ("After", "NYC01"))
    assert asked.one() == ("Before",)  # read in its place, whenever it is read
    assert asked.all() == [("Before",)]
    assert sql.ask("SELECT name FROM stores WHERE code = ?", ("nope",)).one() is None
    assert _name("NYC01") == "After"
    db.session.rollback()
