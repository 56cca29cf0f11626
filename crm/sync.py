"""Shop member sync: up to 1,000 members a call, each answered on its own
(created, updated, matched, unchanged, conflict, invalid), never all-or-nothing.

Matching is deterministic on normalised identifiers only. A member whose shop id is
known updates that customer (unless their ``updated_at`` is not newer than the last one
applied); a new shop id whose email, phone or card belongs to exactly one customer is
matched to them (an in-store customer gets the shop identity); identifiers pointing at
two different customers are a conflict and change nothing. Placeholder values (blocked)
are dropped, never matched.

Everything is read and written in bulk: one query for all identifiers of the batch, one
for the customers they lead to, then one statement per kind of write.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from flask import current_app
from marshmallow import ValidationError
from sqlalchemy import and_, delete, or_, select, update

from crm import audit, contact_changes, pii, signals
from crm.customers import IDENTIFIER_FIELDS, PROFILE_FIELDS, blocked_values, owners, region
from crm.db import db, utcnow
from crm.identifiers import InvalidIdentifier, is_blocked, normalize
from crm.models import (
    PERSONAL_KINDS,
    ConsentEvent,
    Customer,
    CustomerIdentifier,
    birthday_columns,
    identifier_row,
)
from crm.schemas import SyncMemberSchema
from crm.sql import allocate_ids, bulk_insert

_REQUIRED = frozenset(n for n, f in SyncMemberSchema._declared_fields.items() if f.required)
_DECLARED = frozenset(SyncMemberSchema._declared_fields)


@functools.lru_cache(maxsize=64)
def _schema_for(keys: frozenset[str]) -> SyncMemberSchema:
    """A schema limited to the fields a member gives (and the required ones): the
    members of a batch mostly give the same fields, and marshmallow's time grows with
    every declared field, given or not. Unknown fields are still refused."""
    return SyncMemberSchema(only=tuple(sorted((keys & _DECLARED) | _REQUIRED)))


@dataclass
class Member:
    index: int
    external_id: str
    updated_at: datetime
    profile: dict[str, Any]
    identifiers: dict[str, str]  # kind -> value, the shop id included
    consent: dict[str, bool]
    notes: list[str] = field(default_factory=list)
    referral: tuple[str, bool] | None = None  # (referral_code, referral_optional)


@dataclass
class Known:
    """What the batch needs of an existing (or just made) customer."""

    id: int
    profile: dict[str, Any]
    identifiers: dict[str, set[str]]
    consent: dict[str, bool]
    updated_at: datetime | None
    source_updated_at: datetime | None


def _parse(index: int, raw: Any, blocked: frozenset[str], phone_region: str,
           ) -> Member | dict[str, Any]:
    external = raw.get("external_id") if isinstance(raw, dict) else None
    try:
        data = _schema_for(frozenset(raw) if isinstance(raw, dict) else _REQUIRED).load(raw)
    except ValidationError as e:
        return {"external_id": external if isinstance(external, str) else None,
                "customer_id": None, "result": "invalid", "detail": e.messages}
    identifiers, errors, notes = {}, {}, []
    try:
        identifiers["shop"] = normalize("shop", data["external_id"])
    except InvalidIdentifier as e:
        errors["external_id"] = [str(e)]
    for name, kind in IDENTIFIER_FIELDS.items():
        if not data.get(name):
            continue
        try:
            value = normalize(kind, data[name], phone_region)
        except InvalidIdentifier as e:
            errors[name] = [str(e)]
            continue
        if is_blocked(kind, value, blocked):
            notes.append(f"{name} is a placeholder: ignored")  # no value in answers
        else:
            identifiers[kind] = value
    if errors:
        return {"external_id": data["external_id"], "customer_id": None, "result": "invalid",
                "detail": errors}
    profile = {f: data[f] for f in PROFILE_FIELDS if data.get(f) is not None}
    referral = (data["referral_code"], data.get("referral_optional", False)) \
        if data.get("referral_code") else None
    return Member(index, identifiers["shop"], data["updated_at"], profile, identifiers,
                  data.get("consent") or {}, notes, referral)


def _load(ids: set[int]) -> dict[int, Known]:
    if not ids:
        return {}
    clear = [f for f in PROFILE_FIELDS if f != "birthday"]
    rows = db.session.execute(select(
        Customer.id, *(getattr(Customer, f) for f in clear), Customer.birthday_sealed,
        Customer.consent_sms, Customer.consent_email, Customer.updated_at,
        Customer.source_updated_at,
    ).where(Customer.id.in_(ids)))
    ring = pii.keyring()
    known = {}
    for row in rows:
        values = row._mapping
        profile = {f: values[f] for f in clear}
        birthday = ring.open("customers", "birthday_sealed", row.id, row.birthday_sealed)
        profile["birthday"] = date.fromisoformat(birthday) if birthday else None
        known[row.id] = Known(row.id, profile, {},
                              {"sms": row.consent_sms, "email": row.consent_email},
                              row.updated_at, row.source_updated_at)
    for cid, iid, kind, lookup, sealed in db.session.execute(
            select(CustomerIdentifier.customer_id, CustomerIdentifier.id,
                   CustomerIdentifier.kind, CustomerIdentifier.lookup,
                   CustomerIdentifier.sealed).where(CustomerIdentifier.customer_id.in_(ids))):
        value = ring.open("customer_identifiers", "sealed", iid, sealed) \
            if kind in PERSONAL_KINDS else lookup
        known[cid].identifiers.setdefault(kind, set()).add(value)
    return known


def _sealed_birthday(row: dict[str, Any]) -> dict[str, Any]:
    """A customers row with its birthday (if given) in the columns that store it."""
    if "birthday" in row:
        row.update(birthday_columns(row["id"], row.pop("birthday")))
    return row


class Batch:
    """One sync call: decisions made in memory, then written in bulk."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.now = utcnow()
        self.new: list[tuple[Member, Known]] = []
        self.updates: dict[int, dict[str, Any]] = {}
        self.add_ids: list[tuple[Known, str, str]] = []
        self.drop_kinds: set[tuple[int, str]] = set()
        self.consent: list[tuple[Known, str, bool]] = []

    def _change(self, known: Known, member: Member, newer: bool) -> bool:
        """Apply the member's data to ``known``: their non-empty values win when they are
        newer, else they only fill what is empty. Returns whether anything changed."""
        is_new = known.id == 0  # made by this batch: written whole at the end
        changed = {f: v for f, v in member.profile.items()
                   if known.profile.get(f) != v and (newer or known.profile.get(f) is None)}
        known.profile.update(changed)
        for kind, value in member.identifiers.items():
            have = known.identifiers.get(kind, set())
            if value in have or (have and not newer):
                continue
            if have and not is_new:
                self.drop_kinds.add((known.id, kind))
            known.identifiers[kind] = {value}
            if not is_new and kind in contact_changes.WATCHED:
                contact_changes.mark(known.id, [(k, v) for k, vs in known.identifiers.items()
                                                for v in vs])
            if not is_new:
                self.add_ids.append((known, kind, value))
            changed[f"identifier:{kind}"] = value
        for channel, granted in member.consent.items():
            if known.consent.get(channel) != granted and newer:
                known.consent[channel] = granted
                if not is_new:
                    self.consent.append((known, channel, granted))
                changed[f"consent_{channel}"] = granted
        if is_new:
            known.source_updated_at = member.updated_at
            return bool(changed)
        if newer or changed:
            row = self.updates.setdefault(known.id, {"id": known.id})
            row.update({k: v for k, v in changed.items() if k in PROFILE_FIELDS})
            row.update({f"consent_{k}": v for k, v in known.consent.items()})
            if newer:
                row["source_updated_at"] = member.updated_at
                known.source_updated_at = member.updated_at
            if changed:
                row["updated_at"] = self.now
        return bool(changed)

    def create(self, member: Member) -> Known:
        known = Known(0, dict(member.profile), {}, {}, self.now, member.updated_at)
        self.new.append((member, known))
        for kind, value in member.identifiers.items():
            known.identifiers[kind] = {value}
        known.consent = dict(member.consent)
        return known

    def write(self) -> None:
        if self.new:
            rows = [{**{f: None for f in PROFILE_FIELDS}, **k.profile,
                     "consent_sms": k.consent.get("sms", False),
                     "consent_email": k.consent.get("email", False), "created_at": self.now,
                     "updated_at": self.now, "source_updated_at": k.source_updated_at}
                    for _, k in self.new]
            ids = allocate_ids(Customer.__table__, len(rows))
            for row, (_, known), cid in zip(rows, self.new, ids, strict=True):
                row["id"] = known.id = cid
                _sealed_birthday(row)
            bulk_insert(Customer.__table__, rows)
            for _, known in self.new:
                self.consent += [(known, ch, g) for ch, g in known.consent.items()]
            self.add_ids += [(k, kind, value) for _, k in self.new
                             for kind, values in k.identifiers.items() for value in values]
        if self.updates:
            db.session.execute(update(Customer),
                               [_sealed_birthday(row) for row in self.updates.values()])
        if self.drop_kinds:
            db.session.execute(delete(CustomerIdentifier).where(or_(*(
                and_(CustomerIdentifier.customer_id == cid, CustomerIdentifier.kind == kind)
                for cid, kind in self.drop_kinds))))
        if self.add_ids:
            ids = allocate_ids(CustomerIdentifier.__table__, len(self.add_ids))
            bulk_insert(CustomerIdentifier.__table__, [
                {**identifier_row(iid, k.id, kind, value), "created_at": self.now}
                for iid, (k, kind, value) in zip(ids, self.add_ids, strict=True)])
        if self.consent:
            bulk_insert(ConsentEvent.__table__, [
                {"customer_id": k.id, "channel": ch, "granted": g, "source": self.source,
                 "created_at": self.now} for k, ch, g in self.consent])
            audit.record_many([audit.Entry("consent", "customer", k.id,
                                           after={f"consent_{ch}": g, "source": self.source})
                               for k, ch, g in self.consent])


def _referral_problems(members: list[Member]) -> dict[str, str | None]:
    """Why each referral code of the batch cannot be used (loyalty answers)."""
    codes = {m.referral[0] for m in members if m.referral}
    if not codes:
        return {}
    problems: dict[str, str | None] = {}
    for _, answer in signals.referral_codes_check.send(current_app._get_current_object(),
                                                       codes=codes):
        problems.update(answer or {})
    return problems


def sync_members(items: list[Any], source: str = "shop") -> list[dict[str, Any]]:
    """Apply a batch of shop members; one result per item, in order."""
    blocked = blocked_values()
    phone_region = region()
    parsed = [_parse(i, raw, blocked, phone_region) for i, raw in enumerate(items)]
    members = [m for m in parsed if isinstance(m, Member)]
    owner = owners(list({(k, v) for m in members for k, v in m.identifiers.items()}))
    known = _load(set(owner.values()))
    batch = Batch(source)
    answers: dict[int, tuple[Known | None, str, Any]] = {}
    unusable = _referral_problems(members)
    for m in members:
        if m.referral and unusable.get(m.referral[0]):
            if not m.referral[1]:  # not referral_optional: this member is not written
                answers[m.index] = (None, "invalid",
                                    {"referral_code": [unusable[m.referral[0]]]})
                continue
            m.referral = None
        shop_owner = owner.get(("shop", m.external_id))
        others = {owner[(k, v)] for k, v in m.identifiers.items()
                  if k != "shop" and (k, v) in owner}
        if shop_owner is not None and others - {shop_owner}:
            answers[m.index] = (known.get(shop_owner), "conflict", {
                "detail": "Identifiers belong to other customers.",
                "customer_ids": sorted({shop_owner, *others})})
        elif shop_owner is not None:
            k = known[shop_owner]
            newer = k.source_updated_at is None or m.updated_at > k.source_updated_at
            if not newer:
                answers[m.index] = (k, "unchanged", "Not newer than the data held.")
            else:
                answers[m.index] = (k, "updated" if batch._change(k, m, True) else "unchanged",
                                    None)
        elif len(others) > 1:
            answers[m.index] = (None, "conflict", {
                "detail": "The identifiers belong to different customers.",
                "customer_ids": sorted(others)})
        elif others:
            k = known[others.pop()]
            if k.identifiers.get("shop"):
                answers[m.index] = (k, "conflict", {
                    "detail": "This customer is another shop member already.",
                    "customer_ids": [k.id]})
                continue
            newer = k.updated_at is None or m.updated_at > k.updated_at
            batch._change(k, m, newer)
            for kind, value in m.identifiers.items():
                owner[(kind, value)] = k.id
            answers[m.index] = (k, "matched", None)
        else:
            k = batch.create(m)
            key = -len(batch.new)  # stands for the id until written
            known[key] = k
            for kind, value in m.identifiers.items():
                owner[(kind, value)] = key
            answers[m.index] = (k, "created", None)
    batch.write()
    given = [(answers[m.index][0].id, m.referral[0], answers[m.index][1] == "created")
             for m in members if m.referral
             and answers[m.index][1] in ("created", "matched", "updated", "unchanged")]
    if given:
        signals.referral_codes_given.send(current_app._get_current_object(), given=given)
    results = []
    for item in parsed:
        if not isinstance(item, Member):
            results.append(item)
            continue
        k, result, detail = answers[item.index]
        if item.notes:
            detail = {"detail": detail, "notes": item.notes} if detail else {"notes": item.notes}
        results.append({"external_id": item.external_id, "customer_id": k.id if k else None,
                        "result": result, "detail": detail})
    return results
