"""Hand-written SQL on the request's own connection and transaction, for the paths that
run on every sale, where SQLAlchemy's work per statement (building, caching, processing
each value, the unit of work) costs several times what the database does; and bulk
inserts for batch work.

A ``Statement`` is SQLAlchemy Core, compiled once at import for both databases, so a
renamed column fails at import and the text is what SQLAlchemy itself would send.
Parameters are named. Times go in as aware datetimes and come out as aware UTC datetimes,
stored as SQLAlchemy stores them (naive UTC text on SQLite), so ORM code reading the same
rows sees the same values.

Two verbs: ``Sql.run`` sends a statement and gives a ``Result`` to read later;
``Sql.run_many`` sends one statement for many rows. On PostgreSQL statements wait in
this ``Sql``'s queue and go to the server together, in one psycopg pipeline (one round
trip for several), when a result is first read or ``send`` is called; leaving the
``with Sql() as sql:`` block sends what is left. On SQLite (no round trips) they run at
once. Code that mixes these statements with the ORM's sends first: the queue belongs to
the block that made it, and nothing else looks at it.

Driver errors are wrapped into SQLAlchemy's (``DBAPIError.instance``), a lost connection
invalidated, so the error handlers answer them as they answer the ORM's. Listeners of the
engine's ``before_cursor_execute`` event (a statement counter, a tracer) see these
statements too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime
from operator import itemgetter
from types import TracebackType
from typing import Any

from sqlalchemy import JSON, Table, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.crud import REQUIRED

from crm.db import UTCDateTime, db, sqlite_time

DIALECTS = {"sqlite": sqlite.dialect(paramstyle="named"),
            "postgresql": postgresql.psycopg.dialect()}
_INSERT = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}

Params = Mapping[str, Any]


class Statement:
    """SQLAlchemy Core compiled once for each database. ``core`` is the statement, or a
    function of the dialect's name giving it (for ``insert_for``'s ON CONFLICT);
    ``columns`` names the INSERT's or UPDATE's columns given as parameters of the same
    names (a name that is no column of the table is refused here)."""

    def __init__(self, core: ClauseElement | Callable[[str], ClauseElement],
                 columns: list[str] | None = None) -> None:
        self.text: dict[str, str] = {}
        self.defaults: dict[str, Any] = {}  # the values written in the statement itself
        for name, dialect in DIALECTS.items():
            statement = core(name) if callable(core) else core
            missing = [c for c in columns or () if c not in statement.table.c]
            if missing:  # SQLAlchemy would leave them out without a word
                raise ArgumentError(f"{statement.table.name} has no column {missing[0]}")
            compiled = statement.compile(dialect=dialect, column_keys=columns)
            self.text[name] = str(compiled)
            self.defaults.update((k, v) for k, v in compiled.params.items()
                                 if v is not None and v is not REQUIRED)

    def __repr__(self) -> str:
        return f"Statement({self.text['sqlite']!r})"


def insert_for(dialect: str, table: Table) -> Any:
    """The dialect's own INSERT of ``table`` (it knows ``on_conflict_do_nothing``)."""
    return _INSERT[dialect](table)


class Result:
    """The rows a statement answers, read when first asked for (which sends the
    statement, and those before it, if they are still waiting)."""

    __slots__ = ("_cursor", "_rows", "_sql", "sent")

    def __init__(self, sql: Sql, cursor: Any = None, rows: list[tuple[Any, ...]] | None = None
                 ) -> None:
        self._sql, self._cursor, self._rows = sql, cursor, rows
        self.sent = rows is not None

    def all(self) -> list[tuple[Any, ...]]:
        if self._rows is None:
            if not self.sent:
                self._sql.send()
            self._rows = self._sql.fetch(self._cursor)
            self._cursor = None
        return self._rows

    def one(self) -> tuple[Any, ...] | None:
        rows = self.all()
        return rows[0] if rows else None

    def scalar(self) -> Any:
        row = self.one()
        return None if row is None else row[0]


class Sql:
    """Statements on the session's connection (beginning its transaction if need be)."""

    def __init__(self) -> None:
        self.connection = db.session.connection()
        self.dialect = self.connection.dialect.name
        self.postgres = self.dialect == "postgresql"
        self.driver = self.connection.connection.driver_connection
        self.cursor = self.driver.cursor()
        self._queue: list[tuple[str, Any, bool, Any, Result | None]] = []

    def __enter__(self) -> Sql:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 _tb: TracebackType | None) -> None:
        if kind is None:
            self.send()
        else:
            self._queue.clear()

    def run(self, statement: Statement, params: Params | None = None) -> Result:
        """Send ``statement``; read its rows from the result when they are needed."""
        sql = statement.text[self.dialect]
        values = self._values({**statement.defaults, **(params or {})})
        self._announce(sql, values, many=False)
        if self.postgres:
            result = Result(self, cursor=self.driver.cursor())
            self._queue.append((sql, values, False, result._cursor, result))
            return result
        return Result(self, rows=self.fetch(self._execute(self.cursor, sql, values)))

    def run_many(self, statement: Statement, rows: Iterable[Params]) -> None:
        """Send ``statement`` once for each of ``rows`` (executemany)."""
        values = [self._values({**statement.defaults, **row}) for row in rows]
        if not values:
            return
        sql = statement.text[self.dialect]
        self._announce(sql, values, many=True)
        if self.postgres:
            self._queue.append((sql, values, True, self.cursor, None))
        else:
            self._execute(self.cursor, sql, values, many=True)

    def send(self) -> None:
        """Send every statement waiting, in order, in one pipeline."""
        if not self._queue:
            return
        queued, self._queue = self._queue, []
        try:
            with self.driver.pipeline():
                for sql, values, many, cursor, _ in queued:
                    (cursor.executemany if many else cursor.execute)(sql, values)
        except self.connection.dialect.loaded_dbapi.Error as e:
            raise self._wrapped(e, queued[-1][0], queued[-1][1]) from e
        for *_, result in queued:
            if result is not None:
                result.sent = True

    def fetch(self, cursor: Any) -> list[tuple[Any, ...]]:
        try:
            return cursor.fetchall() if cursor.description is not None else []
        except self.connection.dialect.loaded_dbapi.Error as e:
            raise self._wrapped(e, "fetch", None) from e

    def _execute(self, cursor: Any, sql: str, values: Any, many: bool = False) -> Any:
        try:
            return (cursor.executemany if many else cursor.execute)(sql, values)
        except self.connection.dialect.loaded_dbapi.Error as e:
            raise self._wrapped(e, sql, values) from e

    def _wrapped(self, error: Exception, sql: str, values: Any) -> DBAPIError:
        """The driver's error as SQLAlchemy raises it; a lost connection is thrown away."""
        dialect = self.connection.dialect
        lost = dialect.is_disconnect(error, self.driver, None)
        if lost:
            self.connection.invalidate(error)
        return DBAPIError.instance(sql, values, error, dialect.loaded_dbapi.Error,
                                   hide_parameters=True, connection_invalidated=lost,
                                   dialect=dialect)

    def lock(self, name: str) -> None:
        """Serialise the transactions that touch ``name`` until they end: a PostgreSQL
        advisory transaction lock, taken with the next statements sent. On SQLite
        writers are serialised already."""
        if self.postgres:
            self.run(LOCK, {"name": name})

    def _values(self, params: Params) -> dict[str, Any]:
        return {name: self.value(value) for name, value in params.items()}

    def value(self, value: Any) -> Any:
        """A Python value as the column stores it."""
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise ValueError("naive datetime given where an aware one is required")
            return value if self.postgres else sqlite_time(value)
        if isinstance(value, (list, dict)):
            return json.dumps(value)
        return value

    def _announce(self, sql: str, values: Any, many: bool) -> None:
        listeners = self.connection.dispatch.before_cursor_execute
        if listeners:
            listeners(self.connection, self.cursor, sql, values, None, many)


LOCK = Statement(select(func.pg_advisory_xact_lock(func.hashtextextended(
    text(":name"), 0))))


def lock(name: str) -> None:
    """``Sql.lock`` for code on the ORM's path: the lock is taken now."""
    with Sql() as sql:
        sql.lock(name)


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


def bulk_insert(table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert many rows with the driver's own executemany (SQLite) or COPY (PostgreSQL),
    skipping SQLAlchemy's per-value processing (a third of the time of a large batch).
    Values must be plain: datetimes aware (stored as UTCDateTime stores them), no
    defaults filled in. A unique violation fails the whole batch."""
    if not rows:
        return
    columns = list(rows[0])
    sqlite_db = db.session.get_bind().dialect.name == "sqlite"
    formatted: dict[datetime, str] = {}  # a batch has few distinct times

    def as_text(value: Any) -> Any:
        if value is None:
            return None
        if value not in formatted:
            formatted[value] = sqlite_time(value)
        return formatted[value]

    def as_json(value: Any) -> Any:
        return None if value is None else json.dumps(value)

    # Only times (on SQLite) and JSON need converting; everything else goes as it is.
    special = [(i, as_json if isinstance(table.c[c].type, JSON) else as_text)
               for i, c in enumerate(columns)
               if isinstance(table.c[c].type, JSON)
               or (sqlite_db and isinstance(table.c[c].type, UTCDateTime))]
    pick = itemgetter(*columns)
    values: list[Any] = []
    for row in rows:
        record = pick(row)
        if len(columns) == 1:
            record = (record,)
        if special:
            record = list(record)
            for i, convert in special:
                record[i] = convert(record[i])
            record = tuple(record)
        values.append(record)
    connection = db.session.connection()
    if sqlite_db:
        connection.exec_driver_sql(
            f"INSERT INTO {table.name} ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' * len(columns))})", values)
        return
    # PostgreSQL: COPY, in the session's transaction (several times faster than
    # executemany for batches of this size).
    driver = connection.connection.driver_connection
    statement = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
    try:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for record in values:
                copy.write_row(record)
    except connection.dialect.loaded_dbapi.IntegrityError as e:  # as SQLAlchemy reports it
        raise IntegrityError(statement, None, e) from e


def allocate_ids(table: Table, count: int) -> list[int]:
    """Primary keys for ``count`` new rows of ``table``, so that bulk inserts need no
    RETURNING: from the table's sequence on PostgreSQL; on SQLite the write transaction
    holds the database lock, so the next ids after the largest are ours."""
    if count <= 0:
        return []
    if db.session.get_bind().dialect.name == "postgresql":
        return list(db.session.scalars(text(
            "SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :n)"),
            {"table": table.name, "n": count}))
    start = db.session.scalar(text(f"SELECT coalesce(max(id), 0) FROM {table.name}"))
    return list(range(start + 1, start + count + 1))
