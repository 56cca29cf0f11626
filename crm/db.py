"""The database handle, the model base class, and the SQLite connection settings.

SQLite runs in WAL mode with a busy timeout, foreign keys and secure_delete on.
Python's sqlite3 module is put in autocommit mode so that SQLAlchemy's ``begin`` event
issues the BEGIN itself: write transactions start with ``BEGIN IMMEDIATE``, which takes
SQLite's write lock up front (and waits for it up to the busy timeout) instead of
failing later when a read transaction tries to upgrade. Requests that only read
(GET/HEAD/OPTIONS) begin deferred, so readers never wait on writers.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import (
    BigInteger,
    DateTime,
    Integer,
    MetaData,
    String,
    any_,
    bindparam,
    event,
    func,
    literal_column,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.orm import DeclarativeBase, registry
from sqlalchemy.pool import Pool
from sqlalchemy.types import TypeDecorator

# Primary keys of tables that grow without bound: BIGINT on PostgreSQL, and on SQLite the
# INTEGER that aliases the rowid (a BIGINT column there would not autoincrement).
BigId = BigInteger().with_variant(Integer, "sqlite")
# Money in minor units and points: 64-bit everywhere (SQLite's INTEGER already is).
BigInt = BigInteger().with_variant(Integer, "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


SQLITE_DATETIME = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy's SQLite DateTime stores values


def sqlite_time(value: datetime) -> str:
    """An aware datetime as a UTCDateTime column holds it on SQLite (naive UTC text)."""
    return value.astimezone(UTC).strftime(SQLITE_DATETIME)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every database. Naive values are refused."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where an aware one is required")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class DecimalText(TypeDecorator[Decimal]):
    """An exact decimal kept as text: rates and multipliers in settings tables (SQLite
    has no exact numeric type; money itself is always integer minor units)."""

    impl = String(32)
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> str | None:
        return None if value is None else str(Decimal(value).normalize())

    def process_result_value(self, value: str | None, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(value)


def insert_ignoring_conflicts(table: Any, *conflict_columns: str) -> Any:
    """``INSERT ... ON CONFLICT (cols) DO NOTHING`` on PostgreSQL and SQLite. On
    PostgreSQL a conflict with a transaction still in progress waits for it to end, so
    afterwards the row that won is visible."""
    dialect = db.engine.dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    return insert(table).on_conflict_do_nothing(index_elements=list(conflict_columns))


NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    registry = registry(
        metadata=MetaData(naming_convention=NAMING_CONVENTION),
        type_annotation_map={datetime: UTCDateTime()},
    )


# Objects stay loaded after commit: a route commits, then serialises what it wrote.
db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})

# Whether transactions begun in this context will write (SQLite: BEGIN IMMEDIATE).
# CLI commands and jobs write, so the default is True; read-only requests set False.
write_intent: ContextVar[bool] = ContextVar("write_intent", default=True)


@contextmanager
def read_only() -> Iterator[None]:
    token = write_intent.set(False)
    try:
        yield
    finally:
        write_intent.reset(token)


@event.listens_for(Engine, "connect")
def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    dbapi_connection.isolation_level = None  # BEGIN is issued by _begin_sqlite below
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # Deleted and overwritten content is zeroed, so old plain text (or old ciphertext
    # after a key is retired) does not linger in free pages.
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


class WriterConnection(sqlite3.Connection):
    """sqlite3's connection to a database file, whose writers queue for each other.

    Writers to one file wait on an exclusive flock of ``<file>.writer-lock``, in the
    kernel, and are woken the moment it is free. Left to SQLite alone, a waiting writer
    sleeps in its busy handler (1, 2, 5 ... up to 100 ms between tries) and the last
    writer tends to win again: long tails under concurrent tills.

    The lock is let go once COMMIT or ROLLBACK has run, here, not in SQLAlchemy's
    ``commit``/``rollback`` events, which come before them: a writer let in while the
    last one was still writing its pages to the WAL would find SQLite's lock taken and
    sleep a millisecond at least."""

    writer_lock: int | None = None  # the lock file's descriptor, opened on first use
    holds_writer_lock = False

    def take_writer_lock(self, database: str) -> None:
        if self.writer_lock is None:
            self.writer_lock = os.open(f"{database}.writer-lock", os.O_RDWR | os.O_CREAT,
                                       0o600)
        fcntl.flock(self.writer_lock, fcntl.LOCK_EX)
        self.holds_writer_lock = True

    def release_writer_lock(self) -> None:
        if self.holds_writer_lock:
            self.holds_writer_lock = False
            fcntl.flock(self.writer_lock, fcntl.LOCK_UN)

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.release_writer_lock()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.release_writer_lock()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.release_writer_lock()
            if self.writer_lock is not None:
                os.close(self.writer_lock)
                self.writer_lock = None


@event.listens_for(Engine, "do_connect")
def _sqlite_connection_class(dialect: Dialect, _record: Any, _args: Any,
                             params: dict[str, Any]) -> None:
    if dialect.name == "sqlite" and dialect.driver == "pysqlite":
        params.setdefault("factory", WriterConnection)


@event.listens_for(Engine, "begin")
def _begin_sqlite(conn: Any) -> None:
    if conn.dialect.name != "sqlite":
        return
    if write_intent.get():
        dbapi_connection = conn.connection.dbapi_connection
        database = conn.engine.url.database
        if isinstance(dbapi_connection, WriterConnection) and database not in (
                None, "", ":memory:"):
            dbapi_connection.take_writer_lock(database)
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.exec_driver_sql("BEGIN")


@event.listens_for(Pool, "checkin")
@event.listens_for(Pool, "invalidate")
def _never_keep_the_writer_lock(dbapi_connection: Any, *_: Any) -> None:
    """A connection back in the pool (or thrown away) never holds the writer lock."""
    if isinstance(dbapi_connection, WriterConnection):
        dbapi_connection.release_writer_lock()


def is_sqlite() -> bool:
    return db.engine.dialect.name == "sqlite"


def any_of(column: Any, values: list[Any]) -> Any:
    """``column IN (values)`` for thousands of values, bound as one parameter (an array
    on PostgreSQL, JSON read by json_each on SQLite) instead of one each: the statement
    stays small and compiles fast."""
    if db.engine.dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
    rows = select(literal_column("value")).select_from(
        func.json_each(bindparam(None, json.dumps(list(values)))))
    return column.in_(rows)


def plus_days(column: Any, days: int) -> Any:
    """``column`` (a UTCDateTime) plus whole days, in SQL, comparable with such columns."""
    if db.engine.dialect.name == "postgresql":
        return column + func.make_interval(0, 0, 0, int(days))
    return func.strftime("%Y-%m-%d %H:%M:%f", column, f"{int(days):+d} days")
