"""Sealed model attributes: the plain value in Python, only its ciphertext in the database
(crm/pii.py). ``Sealed("birthday_sealed")`` on a model reads and writes that column
through the key ring, with the row's table, column and id as associated data.

The id must be known before a value is sealed. A row that has one seals at once; a new
row keeps the value aside until the session flushes, when every new row of its table
takes its id first (one statement per table: PostgreSQL's sequence; on SQLite, whose
writers hold the database lock, the ids after the largest) and then seals.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session

from crm import pii
from crm.sql import allocate_ids

_PENDING = "_pii_pending"
_OPENED = "_pii_opened"


class NotInSql:
    """On the class, a sealed attribute refuses to be compared: ``Model.attr == value``
    would otherwise be a silent ``WHERE false``. Query its blind index instead."""

    name = "a sealed attribute"

    def __eq__(self, other: object) -> bool:
        raise TypeError(f"{self.name} is sealed: SQL cannot compare it; use its blind index")

    __ne__ = __eq__
    __hash__ = object.__hash__


class Sealed(NotInSql):
    """A personal attribute stored only sealed in the mapped column ``column``.
    ``dump``/``load`` turn the Python value into text and back; ``on_set`` also runs
    on every assignment (to keep derived clear columns or blind indexes up to date)."""

    def __init__(self, column: str, dump: Callable[[Any], str] = str,
                 load: Callable[[str], Any] = str,
                 on_set: Callable[[Any, Any], None] | None = None,
                 empty: Any = None) -> None:
        self.column, self.dump, self.load, self.on_set = column, dump, load, on_set
        self.name, self.empty = column, empty  # empty: what a NULL column reads as

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        pending = obj.__dict__.get(_PENDING)
        if pending and self.name in pending:
            return pending[self.name]
        sealed = getattr(obj, self.column)
        if sealed is None:
            return self.empty
        opened = obj.__dict__.setdefault(_OPENED, {})
        hit = opened.get(self.name)
        if hit is not None and hit[0] == sealed:
            return hit[1]
        value = self.load(pii.open_(obj.__table__.name, self.column, obj.id, sealed))
        opened[self.name] = (sealed, value)
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        if self.on_set is not None:
            self.on_set(obj, value)
        row_id = obj.id
        if row_id is None:
            obj.__dict__.setdefault(_PENDING, {})[self.name] = value
            return
        _seal_only(self, obj, value)


def _insert_order(obj: Any) -> int:
    return inspect(obj).insert_order or 0


@event.listens_for(Session, "before_flush")
def _seal_new_rows(session: Session, _context: Any, _instances: Any) -> None:
    waiting = [o for o in session.new if o.__dict__.get(_PENDING)]
    if not waiting:
        return
    tables = {o.__table__ for o in waiting}
    new = sorted((o for o in session.new
                  if getattr(o, "__table__", None) in tables and o.id is None),
                 key=_insert_order)
    by_table: dict[Any, list[Any]] = {}
    for obj in new:
        by_table.setdefault(obj.__table__, []).append(obj)
    with session.no_autoflush:
        for table, rows in by_table.items():
            for obj, row_id in zip(rows, allocate_ids(table, len(rows)), strict=True):
                obj.id = row_id
    for obj in waiting:
        for name, value in obj.__dict__.pop(_PENDING).items():
            _seal_only(_descriptor(type(obj), name), obj, value)


def _descriptor(cls: type, name: str) -> Sealed:
    return next(c.__dict__[name] for c in cls.__mro__ if name in c.__dict__)


def _seal_only(attribute: Sealed, obj: Any, value: Any) -> None:
    text = None if value is None else attribute.dump(value)
    setattr(obj, attribute.column, pii.seal(obj.__table__.name, attribute.column, obj.id, text))
    obj.__dict__.setdefault(_OPENED, {})[attribute.name] = (getattr(obj, attribute.column),
                                                            value)
