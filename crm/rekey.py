"""Key rotation for sealed personal data: which columns are sealed, how many values each
root key still seals, and re-encryption under the current key in batches.

Re-encryption runs beside the service. Each batch is its own short transaction: it reads
values not sealed with the current key, opens and seals them again, and writes each back
only if it is still what was read (a writer that changed it meanwhile sealed its new
value with the current key already). Stopped at any point, it starts again where the
values still need it: nothing records progress but the values themselves.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, and_, bindparam, func, select, update

from crm import pii
from crm.db import db
from crm.models import CustomerMerge
from crm.sealed import Sealed

SNAPSHOT_PARTS = {"survivor": "survivor_id", "source": "source_id", "result": "survivor_id"}


@dataclass(frozen=True)
class SealedColumn:
    table: Table
    column: str


def sealed_columns() -> list[SealedColumn]:
    """Every column a model seals through a ``Sealed`` attribute."""
    found = []
    for mapper in db.Model.registry.mappers:
        for attribute in vars(mapper.class_).values():
            if isinstance(attribute, Sealed):
                found.append(SealedColumn(mapper.local_table, attribute.column))
    return sorted(found, key=lambda c: (c.table.name, c.column))


def _with_key(column: Any, key_id: str) -> Any:
    return column.like(f"{key_id}$%")


def usage() -> dict[str, int]:
    """How many sealed values each root key seals, over every sealed column (and the
    birthdays in merge snapshots)."""
    counts: dict[str, int] = {}
    for sealed in sealed_columns():
        column = sealed.table.c[sealed.column]
        prefix = func.split_part(column, "$", 1) if db.engine.dialect.name == "postgresql" \
            else func.substr(column, 1, func.instr(column, "$") - 1)
        for key_id, n in db.session.execute(
                select(prefix, func.count()).where(column.is_not(None)).group_by(prefix)):
            counts[key_id] = counts.get(key_id, 0) + n
    for snapshot in _snapshots():
        for part in SNAPSHOT_PARTS:
            key_id = pii.key_id_of((snapshot.get(part) or {}).get("birthday"))
            if key_id:
                counts[key_id] = counts.get(key_id, 0) + 1
    return counts


def _snapshots() -> Iterator[dict[str, Any]]:
    for (snapshot,) in db.session.execute(select(CustomerMerge.snapshot)).yield_per(1000):
        yield snapshot


def _batch(sealed: SealedColumn, current: str, after: int, size: int
           ) -> tuple[int, int] | None:
    """Re-seal up to ``size`` values of one column after id ``after``, in a transaction
    of its own: the last id seen and how many were re-sealed; None when none were left."""
    ring = pii.keyring()
    table, name = sealed.table, sealed.column
    column = table.c[name]
    rows = db.session.execute(
        select(table.c.id, column)
        .where(table.c.id > after, column.is_not(None), ~_with_key(column, current))
        .order_by(table.c.id).limit(size)).all()
    if not rows:
        db.session.rollback()
        return None
    db.session.execute(
        update(table).where(and_(table.c.id == bindparam("row_id"),
                                 column == bindparam("old"))).values({name: bindparam("new")}),
        [{"row_id": row_id, "old": old,
          "new": ring.seal(table.name, name, row_id, ring.open(table.name, name, row_id, old))}
         for row_id, old in rows])
    db.session.commit()
    return rows[-1][0], len(rows)


def _snapshot_batch(current: str, after: int, size: int) -> tuple[int, int] | None:
    ring = pii.keyring()
    rows = db.session.execute(
        select(CustomerMerge.id, CustomerMerge.survivor_id, CustomerMerge.source_id,
               CustomerMerge.snapshot)
        .where(CustomerMerge.id > after).order_by(CustomerMerge.id).limit(size)).all()
    if not rows:
        db.session.rollback()
        return None
    changed = []
    for merge_id, survivor_id, source_id, snapshot in rows:
        owners = {"survivor_id": survivor_id, "source_id": source_id}
        new = dict(snapshot)
        for part, owner in SNAPSHOT_PARTS.items():
            old = (snapshot.get(part) or {}).get("birthday")
            if old is not None and pii.key_id_of(old) != current:
                opened = ring.open("customer_merges", "snapshot.birthday", owners[owner], old)
                new[part] = {**snapshot[part], "birthday": ring.seal(
                    "customer_merges", "snapshot.birthday", owners[owner], opened)}
        if new != snapshot:
            changed.append({"merge_id": merge_id, "snapshot": new})
    if changed:  # snapshots are written once, with the merge: nobody races this update
        db.session.execute(update(CustomerMerge.__table__)
                           .where(CustomerMerge.__table__.c.id == bindparam("merge_id")),
                           changed)
    db.session.commit()
    return rows[-1][0], len(changed)


def reencrypt(batch: int = 500) -> Iterator[tuple[str, int]]:
    """Re-seal every value not sealed with the current key; yields (column, values
    re-sealed so far in it) after each batch."""
    current = pii.keyring().current
    for sealed in sealed_columns():
        name, done, after = f"{sealed.table.name}.{sealed.column}", 0, 0
        while (step := _batch(sealed, current, after, batch)) is not None:
            after, done = step[0], done + step[1]
            yield name, done
    after, done = 0, 0
    while (step := _snapshot_batch(current, after, batch)) is not None:
        after, done = step[0], done + step[1]
        yield "customer_merges.snapshot", done
