"""Merging two records of one person, and undoing it.

The survivor keeps, per profile field, the newest non-empty value (by each record's
``updated_at``), the earlier ``created_at``, and per channel the most recent explicit
consent choice of either. The source's identifiers and consent history move to the
survivor, so lookups by its old email or phone find the survivor; the source answers
``merged_into``. Other packages move their own rows on the ``customer_merged`` signal and
note their ids in ``moved``, so that ``unmerge`` can put everything back.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from flask import current_app
from sqlalchemy import select, update

from crm import audit, pii, signals
from crm.consent import latest_choices
from crm.customers import PROFILE_FIELDS
from crm.db import db, utcnow
from crm.errors import Conflict, Invalid, NotFound
from crm.models import ConsentEvent, Customer, CustomerIdentifier, CustomerMerge


def _locked(*ids: int) -> dict[int, Customer]:
    found = {c.id: c for c in db.session.scalars(
        select(Customer).where(Customer.id.in_(ids)).order_by(Customer.id)
        .with_for_update().execution_options(populate_existing=True))}
    for cid in ids:
        if cid not in found:
            raise NotFound(f"No customer has the id {cid}.")
    return found


def _snapshot(c: Customer) -> dict[str, Any]:
    """A profile as it is now, for unmerge; the birthday sealed (bound to the customer)."""
    profile = {f: getattr(c, f) for f in PROFILE_FIELDS}
    profile["birthday"] = pii.seal("customer_merges", "snapshot.birthday", c.id,
                                   profile["birthday"].isoformat()
                                   if profile["birthday"] else None)
    return {**profile, "consent": c.consent, "created_at": c.created_at.isoformat()}


def _opened(snapshot: dict[str, Any], customer_id: int) -> dict[str, Any]:
    """A snapshot's profile with its birthday back as a date."""
    birthday = pii.open_("customer_merges", "snapshot.birthday", customer_id,
                         snapshot["birthday"])
    return {**snapshot, "birthday": date.fromisoformat(birthday) if birthday else None}


def _move(model: Any, column: str, source_id: int, survivor_id: int) -> list[int]:
    ids = list(db.session.scalars(select(model.id).where(getattr(model, column) == source_id)))
    if ids:
        db.session.execute(update(model.__table__).where(model.id.in_(ids))
                           .values({column: survivor_id}))
    return ids


def merge(survivor_id: int, source_id: int, actor: str, force: bool = False) -> CustomerMerge:
    if survivor_id == source_id:
        raise Invalid("A customer cannot be merged with itself.",
                      errors={"source_customer_id": ["The same customer."]})
    both = _locked(survivor_id, source_id)
    survivor, source = both[survivor_id], both[source_id]
    for c in (survivor, source):
        if c.merged_into_id is not None:
            raise Conflict(f"Customer {c.id} was merged into {c.merged_into_id} already.")
        if c.erased_at is not None:
            raise Conflict(f"Customer {c.id} was erased.")
    shop_ids = {c.id: [i.value for i in c.identifiers if i.kind == "shop"] for c in (survivor,
                                                                                    source)}
    if all(shop_ids.values()) and not force:
        raise Conflict("Both are shop members with their own accounts "
                       f"({shop_ids[survivor.id][0]}, {shop_ids[source.id][0]}): merge only "
                       "if they are one person, with force: true.")
    snapshot = {"survivor": _snapshot(survivor), "source": _snapshot(source)}

    newer, older = sorted((survivor, source), key=lambda c: c.updated_at, reverse=True)
    for f in PROFILE_FIELDS:
        value = getattr(newer, f)
        setattr(survivor, f, value if value is not None else getattr(older, f))
    survivor.created_at = min(survivor.created_at, source.created_at)
    if source.source_updated_at and (survivor.source_updated_at is None or
                                     source.source_updated_at > survivor.source_updated_at):
        survivor.source_updated_at = source.source_updated_at
    for channel, choice in latest_choices([survivor.id, source.id]).items():
        setattr(survivor, f"consent_{channel}", choice["granted"])

    moved: dict[str, Any] = {
        "identifiers": _move(CustomerIdentifier, "customer_id", source.id, survivor.id),
        "consent_events": _move(ConsentEvent, "customer_id", source.id, survivor.id),
        "merged_children": _move(Customer, "merged_into_id", source.id, survivor.id),
    }
    source.merged_into_id = survivor.id
    survivor.updated_at = utcnow()
    snapshot["result"] = _snapshot(survivor)
    db.session.flush()
    signals.customer_merged.send(current_app._get_current_object(), survivor_id=survivor.id,
                                 source_id=source.id, moved=moved)
    record = CustomerMerge(survivor_id=survivor.id, source_id=source.id, actor=actor,
                           snapshot=snapshot, moved=moved)
    db.session.add(record)
    db.session.flush()
    audit.record("merge", "customer", survivor_id, actor=actor,
                 after={"source_customer_id": source_id, "merge_id": record.id,
                        "forced": force})
    db.session.expire(survivor, ["identifiers"])
    return record


def _back(model: Any, column: str, ids: list[int], survivor_id: int, source_id: int) -> None:
    if ids:
        db.session.execute(update(model.__table__).where(
            model.id.in_(ids), getattr(model, column) == survivor_id).values({column: source_id}))


def unmerge(survivor_id: int, source_id: int, actor: str) -> CustomerMerge:
    """Undo the latest merge of ``source_id`` into ``survivor_id``: both customers come
    back as they were, with what moved. Refused while the survivor is merged elsewhere."""
    record = db.session.scalar(
        select(CustomerMerge).where(CustomerMerge.survivor_id == survivor_id,
                                    CustomerMerge.source_id == source_id,
                                    CustomerMerge.undone_at.is_(None))
        .order_by(CustomerMerge.id.desc()).limit(1))
    if record is None:
        raise NotFound(f"Customer {source_id} was not merged into {survivor_id}.")
    both = _locked(survivor_id, source_id)
    survivor, source = both[survivor_id], both[source_id]
    if survivor.merged_into_id is not None:
        raise Conflict(f"Customer {survivor_id} has been merged into {survivor.merged_into_id} "
                       "since: undo that merge first.",
                       blocking_merge_into=survivor.merged_into_id)
    moved = record.moved
    _back(CustomerIdentifier, "customer_id", moved["identifiers"], survivor_id, source_id)
    _back(ConsentEvent, "customer_id", moved["consent_events"], survivor_id, source_id)
    _back(Customer, "merged_into_id", moved["merged_children"], survivor_id, source_id)
    source.merged_into_id = None
    before = _opened(record.snapshot["survivor"], survivor_id)
    result = _opened(record.snapshot["result"], survivor_id)
    for f in PROFILE_FIELDS:  # a field edited since the merge keeps its new value
        if getattr(survivor, f) == result[f]:
            setattr(survivor, f, before[f])
    survivor.created_at = datetime.fromisoformat(before["created_at"])
    for channel in ("sms", "email"):
        choice = latest_choices([survivor.id]).get(channel)
        setattr(survivor, f"consent_{channel}",
                choice["granted"] if choice else before["consent"][channel])
    survivor.updated_at = utcnow()
    db.session.flush()
    signals.customer_unmerged.send(current_app._get_current_object(), survivor_id=survivor_id,
                                   source_id=source_id, moved=moved)
    record.undone_at = utcnow()
    db.session.flush()
    audit.record("unmerge", "customer", survivor_id, actor=actor,
                 after={"source_customer_id": source_id, "merge_id": record.id})
    db.session.expire(survivor, ["identifiers"])
    db.session.expire(source, ["identifiers"])
    return record

