"""Hand-written SQL on the request's own connection and transaction, for the hot path (a
till's sale) where SQLAlchemy's work per statement — building, caching, processing each
value, the unit of work — costs several times what the database does.

Statements are written once, with ``?`` placeholders, in the SQL both databases speak
(``ON CONFLICT``, ``RETURNING``); on PostgreSQL the placeholders become psycopg's ``%s``
and ``FOR UPDATE`` clauses are kept (SQLite's write transaction is the lock there). Times
go in as aware datetimes and come out as aware UTC datetimes, stored as SQLAlchemy stores
them (naive UTC text on SQLite), so ORM code reading the same rows sees the same values.
Listeners of the engine's ``before_cursor_execute`` event (a statement counter, a tracer)
see these statements too.

A statement whose result nobody reads can be sent ``later``, and a query whose rows are
needed only further on can be ``ask``ed: on PostgreSQL they wait, in the transaction's
queue, for the next statement that is read (or the first read of an answer), and they go
to the server together in one psycopg pipeline (one round trip instead of several);
anything else that runs on the connection — a query of this module, any SQLAlchemy
statement, the commit — sends the queue first, so every reader sees the writes before
it, in order. On SQLite (no round trips) they run at once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import Pool

from crm.db import db, sqlite_time

_FOR_UPDATE = re.compile(r"\s+FOR UPDATE( OF \w+)?")
_postgres_text: dict[str, str] = {}
_sqlite_text: dict[str, str] = {}


class Sql:
    """A cursor on the session's connection (beginning its transaction if need be)."""

    def __init__(self) -> None:
        self.connection = db.session.connection()
        self.postgres = self.connection.dialect.name == "postgresql"
        self.driver = self.connection.connection.driver_connection
        self.cursor = self.driver.cursor()

    def _announce(self, statement: str, params: Any, many: bool) -> None:
        listeners = self.connection.dispatch.before_cursor_execute
        if listeners:
            listeners(self.connection, self.cursor, statement, params, None, many)

    def _text(self, sql: str) -> str:
        if self.postgres:
            found = _postgres_text.get(sql)
            if found is None:
                found = _postgres_text[sql] = sql.replace("?", "%s")
            return found
        found = _sqlite_text.get(sql)
        if found is None:
            found = _sqlite_text[sql] = _FOR_UPDATE.sub("", sql)
        return found

    def value(self, value: Any) -> Any:
        """A Python value as the column stores it."""
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise ValueError("naive datetime given where an aware one is required")
            return value if self.postgres else sqlite_time(value)
        if isinstance(value, (list, dict)):
            return json.dumps(value)
        return value

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        statement, values = self._text(sql), [self.value(v) for v in params]
        self._announce(statement, values, False)
        queued = self.connection.info.pop(_QUEUE, None)
        if not queued:
            return self.cursor.execute(statement, values)
        with self.driver.pipeline():
            _send(self.driver, queued)
            self.cursor.execute(statement, values)
        return self.cursor

    def lock(self, name: str) -> None:
        """Serialise transactions that touch ``name`` until they end: a PostgreSQL
        advisory transaction lock, taken with the next statement. On SQLite writers are
        serialised already."""
        if self.postgres:
            self.later("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", (name,))

    def later(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run a statement whose result is not read, now or with the next one."""
        self._later(sql, [[self.value(v) for v in params]], many=False)

    def many_later(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run a statement once per row (executemany), now or with the next one."""
        rows = [[self.value(v) for v in row] for row in rows]
        if rows:
            self._later(sql, rows, many=True)

    def ask(self, sql: str, params: Sequence[Any] = ()) -> Answer:
        """A query whose rows are read later: on PostgreSQL it goes with the statements
        sent later, and its rows come when they are first read."""
        if not self.postgres:  # read now, leaving no statement open
            return Answer(self.connection, rows=self.all(sql, params))
        cursor = self.driver.cursor()
        self._later(sql, [[self.value(v) for v in params]], many=False, cursor=cursor)
        return Answer(self.connection, cursor=cursor)

    def _later(self, sql: str, rows: list[list[Any]], many: bool,
               cursor: Any = None) -> None:
        statement = self._text(sql)
        self._announce(statement, rows if many else rows[0], many)
        if self.postgres:
            self.connection.info.setdefault(_QUEUE, []).append(
                (statement, rows, many, cursor))
        elif many:
            self.cursor.executemany(statement, rows)
        else:
            self.cursor.execute(statement, rows[0])

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        # Read to the end: on SQLite a statement left half-read stays open and can keep
        # the transaction from ending.
        rows = self.execute(sql, params).fetchall()
        return rows[0] if rows else None

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.execute(sql, params).fetchall()


class Answer:
    """The rows of a query asked with ``Sql.ask``: read already, or coming to a cursor
    with the queue."""

    def __init__(self, connection: Connection, *, rows: list[tuple[Any, ...]] | None = None,
                 cursor: Any = None) -> None:
        self.connection, self.rows, self.cursor = connection, rows, cursor

    def all(self) -> list[tuple[Any, ...]]:
        if self.rows is None:
            send_queued(self.connection)
            self.rows, self.cursor = self.cursor.fetchall(), None
        return self.rows

    def one(self) -> tuple[Any, ...] | None:
        rows = self.all()
        return rows[0] if rows else None


_QUEUE = "crm_sql_queue"  # in Connection.info: statements sent later, in order


def _send(driver: Any, queued: list[tuple[str, list[list[Any]], bool, Any]]) -> None:
    for statement, rows, many, cursor in queued:
        cursor = cursor or driver.cursor()
        if many:
            cursor.executemany(statement, rows)
        else:
            cursor.execute(statement, rows[0])


def send_queued(connection: Connection) -> None:
    """Send the statements queued on ``connection``, in one pipeline."""
    queued = connection.info.pop(_QUEUE, None)
    if queued:
        driver = connection.connection.driver_connection
        with driver.pipeline():
            _send(driver, queued)


@event.listens_for(Engine, "before_execute")
def _before_sqlalchemy_statement(connection: Connection, *_: Any) -> None:
    if _QUEUE in connection.info:
        send_queued(connection)


@event.listens_for(Engine, "commit")
def _before_commit(connection: Connection) -> None:
    if _QUEUE in connection.info:
        send_queued(connection)


@event.listens_for(Engine, "rollback")
def _on_rollback(connection: Connection) -> None:
    connection.info.pop(_QUEUE, None)


@event.listens_for(Pool, "checkin")
def _never_keep_a_queue(_dbapi_connection: Any, record: Any) -> None:
    if record is not None:
        record.info.pop(_QUEUE, None)


def lock_name(name: str) -> None:
    """``Sql.lock`` in the session's transaction."""
    Sql().lock(name)


def as_time(value: Any) -> datetime | None:
    """A stored time, read back: an aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return value.astimezone(UTC)


def as_date(value: Any) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(value)
