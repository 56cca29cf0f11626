"""Counters and heartbeats shared by every worker and node, one row per name in
``service_state``: ``api_keys`` (bumped by every change to keys or stores, read with the
key cache, so a revocation stops the key at once everywhere) and ``scheduler`` (the active
scheduler's heartbeat, read by /healthz)."""

from __future__ import annotations

import os
import sqlite3
import threading
from datetime import datetime

from sqlalchemy import select, update

from crm.db import db, insert_ignoring_conflicts, utcnow
from crm.models import ServiceState

_TABLE = ServiceState.__table__


def counter(name: str) -> int:
    """The counter's value (0 before its first bump): one primary-key read."""
    return db.session.scalar(select(ServiceState.counter).where(ServiceState.name == name)) or 0


_readers = threading.local()  # SQLite: (pid, path, connection) of this thread


def peek(name: str) -> int:
    """The counter as last committed, read outside the request's transaction. Every
    request reads the key counter, and on SQLite a read in the request's own session
    would begin its transaction there, so a sale would hold the write lock from its
    authentication on: instead a connection of this thread's own, in autocommit, reads it
    (WAL: never waits for a writer). On PostgreSQL it is the session's first statement."""
    url = db.engine.url
    if db.engine.dialect.name != "sqlite" or url.database in (None, "", ":memory:"):
        return counter(name)
    reader = getattr(_readers, "connection", None)
    if reader is None or reader[0] != os.getpid() or reader[1] != url.database:
        connection = sqlite3.connect(url.database, isolation_level=None,
                                     check_same_thread=False, timeout=5)
        reader = _readers.connection = (os.getpid(), url.database, connection)
    row = reader[2].execute("SELECT counter FROM service_state WHERE name = ?",
                            (name,)).fetchone()
    return row[0] if row else 0


def bump(name: str) -> None:
    """Add one to the counter, in the session's transaction (it counts once committed)."""
    _ensure(name)
    db.session.execute(update(ServiceState).where(ServiceState.name == name)
                       .values(counter=ServiceState.counter + 1))


def beat(name: str, node: str) -> None:
    """Record that ``node`` is alive now, in the session's transaction."""
    _ensure(name)
    db.session.execute(update(ServiceState).where(ServiceState.name == name)
                       .values(at=utcnow(), node=node[:120]))


def last_beat(name: str) -> tuple[datetime | None, str | None]:
    row = db.session.execute(select(ServiceState.at, ServiceState.node)
                             .where(ServiceState.name == name)).one_or_none()
    return (row[0], row[1]) if row is not None else (None, None)


def _ensure(name: str) -> None:
    db.session.execute(insert_ignoring_conflicts(_TABLE, "name").values(name=name, counter=0))
