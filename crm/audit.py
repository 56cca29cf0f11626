"""The audit log: append-only, hash-chained rows of who changed what.

Each row names when, the actor (``key:<id>:<name>``, ``cli``...), the key's store, the
address and request id, the action, the object (type and id), the names of the fields
changed and, for non-personal values only, what they were before and after. Its
``hash`` is the SHA-256 of its content and of the row before's hash, so a row changed,
removed or inserted later breaks the chain: ``flask audit verify`` recomputes it and names
the first bad row. Triggers refuse UPDATE and DELETE on the table (migration 0041).

Rows are written in the caller's transaction (a change that rolls back leaves none).
The chain needs the previous row's hash, so writers of audit rows take turns (a
PostgreSQL advisory lock; SQLite has one writer anyway): sales, returns and the points
they earn are therefore not audited here: they are the append-only purchases and points
ledger, which name their cause and actor themselves."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from flask import g, has_request_context, request
from sqlalchemy import Select, select

from crm.db import db, utcnow
from crm.models import AuditLog
from crm.sql import lock

GENESIS = "0" * 64
PERSONAL = frozenset({"email", "phone", "card_number", "card", "first_name", "last_name",
                      "birthday", "city"})


def _plain(value: Any) -> Any:
    """A value as JSON keeps it (so that the hash of what is read back is the same)."""
    return json.loads(json.dumps(value, default=str))


def _canonical(row: AuditLog, prev_hash: str) -> bytes:
    content = {
        "id": row.id, "at": row.created_at.astimezone(UTC).isoformat(), "actor": row.actor,
        "store_id": row.store_id, "address": row.address, "request_id": row.request_id,
        "action": row.action, "object_type": row.object_type, "object_id": row.object_id,
        "fields": row.fields, "before": row.before, "after": row.after, "prev": prev_hash,
    }
    return json.dumps(content, sort_keys=True, separators=(",", ":")).encode()


def digest(row: AuditLog, prev_hash: str) -> str:
    return hashlib.sha256(_canonical(row, prev_hash)).hexdigest()


def _who() -> tuple[str, int | None, str | None, str | None]:
    if not has_request_context():
        return "cli", None, None, None
    from crm.auth import actor_of

    key = g.get("api_key")
    actor = g.get("audit_actor") or (actor_of(key) if key is not None else "anonymous")
    store_id = key.store.id if key is not None and key.store is not None else None
    return actor, store_id, (request.remote_addr or "")[:45] or None, g.get("request_id")


def changes(before: dict[str, Any], after: dict[str, Any]) -> tuple[list[str], dict, dict]:
    """The names of the fields that differ, and their before and after values with the
    personal ones left out (named in ``fields`` only)."""
    names = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    keep = [n for n in names if n not in PERSONAL]
    return names, {n: before.get(n) for n in keep}, {n: after.get(n) for n in keep}


def record(action: str, object_type: str, object_id: Any, *,
           fields: Iterable[str] = (), before: dict[str, Any] | None = None,
           after: dict[str, Any] | None = None, actor: str | None = None) -> AuditLog:
    """Append a row to the audit log, in the caller's transaction. ``before`` and
    ``after`` must hold no personal values: names of personal fields go in ``fields``."""
    return record_many([Entry(action, object_type, object_id, tuple(fields), before, after)],
                       actor)[0]


@dataclass(frozen=True)
class Entry:
    action: str
    object_type: str
    object_id: Any
    fields: tuple[str, ...] = ()
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None


def record_many(entries: list[Entry], actor: str | None = None) -> list[AuditLog]:
    """Append several rows at once (a batch of synced members): one turn at the chain."""
    if not entries:
        return []
    for entry in entries:
        for values in (entry.before, entry.after):
            leaked = PERSONAL.intersection(values or {})
            if leaked:
                raise ValueError(f"personal fields in an audit row: {sorted(leaked)}")
    who, store_id, address, request_id = _who()
    lock("audit-log")  # the chain is one sequence: writers take turns
    last = db.session.execute(select(AuditLog.id, AuditLog.hash)
                              .order_by(AuditLog.id.desc()).limit(1)).first()
    next_id, prev = (last.id + 1, last.hash) if last else (1, GENESIS)
    now, rows = utcnow(), []
    for entry in entries:
        row = AuditLog(
            id=next_id, created_at=now, actor=(actor or who)[:120], store_id=store_id,
            address=address, request_id=request_id, action=entry.action[:40],
            object_type=entry.object_type[:40], object_id=str(entry.object_id)[:64],
            fields=sorted(set(entry.fields) | set(entry.before or {}) | set(entry.after or {})),
            before=_plain(entry.before or {}), after=_plain(entry.after or {}), prev_hash=prev)
        row.hash = prev = digest(row, prev)
        rows.append(row)
        next_id += 1
    db.session.add_all(rows)
    db.session.flush()
    return rows


def columns(obj: Any, skip: Iterable[str] = ("id", "created_at", "updated_at")) -> dict:
    """A settings row's column values, for before/after (never a customer's row)."""
    left_out = set(skip)
    return {c.key: getattr(obj, c.key) for c in obj.__mapper__.column_attrs
            if c.key not in left_out}


def record_change(action: str, object_type: str, object_id: Any, before: dict[str, Any],
                  after: dict[str, Any]) -> AuditLog | None:
    """Record an update as the fields it changed (None when nothing changed)."""
    names, old, new = changes(before, after)
    if not names:
        return None
    return record(action, object_type, object_id, fields=names, before=old, after=new)


def search(filters: dict[str, Any]) -> Select[tuple[AuditLog]]:
    stmt = select(AuditLog).order_by(AuditLog.id.desc())
    for name in ("actor", "object_type", "object_id", "action"):
        if filters.get(name) is not None:
            stmt = stmt.where(getattr(AuditLog, name) == str(filters[name]))
    if filters.get("from") is not None:
        stmt = stmt.where(AuditLog.created_at >= filters["from"])
    if filters.get("to") is not None:
        stmt = stmt.where(AuditLog.created_at < filters["to"])
    return stmt


def verify(batch: int = 5000) -> tuple[int, int | None, str | None]:
    """Recompute the chain: (rows checked, id of the first bad row or None, why)."""
    checked, prev, expected_id = 0, GENESIS, 1
    for row in _rows(batch):
        if row.id != expected_id:
            return checked, row.id, f"row {expected_id} is missing (next is {row.id})"
        if row.prev_hash != prev:
            return checked, row.id, "it does not follow the row before (prev_hash)"
        if digest(row, prev) != row.hash:
            return checked, row.id, "its content does not match its hash"
        checked, prev, expected_id = checked + 1, row.hash, row.id + 1
    return checked, None, None


def _rows(batch: int) -> Iterator[AuditLog]:
    after = 0
    while True:
        rows = db.session.scalars(select(AuditLog).where(AuditLog.id > after)
                                  .order_by(AuditLog.id).limit(batch)).all()
        if not rows:
            return
        yield from rows
        after = rows[-1].id
        db.session.expunge_all()

