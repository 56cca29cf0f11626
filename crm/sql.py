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
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from typing import Any

from crm.db import SQLITE_DATETIME, db

_FOR_UPDATE = re.compile(r"\s+FOR UPDATE( OF \w+)?")
_postgres_text: dict[str, str] = {}
_sqlite_text: dict[str, str] = {}


class Sql:
    """A cursor on the session's connection (beginning its transaction if need be)."""

    def __init__(self) -> None:
        self.connection = db.session.connection()
        self.postgres = self.connection.dialect.name == "postgresql"
        self.cursor = self.connection.connection.driver_connection.cursor()

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
            return value if self.postgres else value.astimezone(UTC).strftime(SQLITE_DATETIME)
        if isinstance(value, (list, dict)):
            return json.dumps(value)
        return value

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        statement, values = self._text(sql), [self.value(v) for v in params]
        self._announce(statement, values, False)
        return self.cursor.execute(statement, values)

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        return self.execute(sql, params).fetchone()

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.execute(sql, params).fetchall()

    def many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = [[self.value(v) for v in row] for row in rows]
        if rows:
            statement = self._text(sql)
            self._announce(statement, rows, True)
            self.cursor.executemany(statement, rows)


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
