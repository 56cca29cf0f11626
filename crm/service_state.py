"""Counters and heartbeats shared by every worker and node, one row per name in
``service_state``: ``api_keys`` (bumped by every change to keys or stores, read with the
key cache, so a revocation stops the key at once everywhere) and ``scheduler`` (the active
scheduler's heartbeat, read by /healthz)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update

from crm.db import db, insert_ignoring_conflicts, utcnow
from crm.models import ServiceState

_TABLE = ServiceState.__table__


def counter(name: str) -> int:
    """The counter's value (0 before its first bump): one primary-key read."""
    return db.session.scalar(select(ServiceState.counter).where(ServiceState.name == name)) or 0


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
