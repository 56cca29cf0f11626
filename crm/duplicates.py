"""Likely duplicates: customers who may be one person but share no identifier.

Candidates come from blocking keys, so nobody is compared with every customer: the same
birthday, the same last name and first initial, the same last seven digits of a phone,
the same first five characters of an email, the same look-alike form of an email (its
skeleton: an address with a Cyrillic letter reads as the Latin one it imitates), each a
short blind index (crm/pii.py: the values themselves are sealed). Each candidate pair
is then scored with rapidfuzz on names and emails, Fellegi-Sunter style: agreement on
each field adds its weight, and the reasons say which fields agreed; look-alike emails
and names are named as such, with the characters that only look Latin. Nothing is ever
merged automatically.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from rapidfuzz import fuzz
from sqlalchemy import and_, func, select, union
from sqlalchemy.orm import aliased, selectinload

from crm.db import db, insert_ignoring_conflicts, utcnow
from crm.identifiers import look_alikes, skeleton
from crm.models import Customer, CustomerIdentifier, DuplicateSuggestion

THRESHOLD = 50
MAX_CANDIDATES = 200


@dataclass
class Match:
    customer: Customer
    score: int
    reasons: list[str]


def _candidate_pairs(ids: list[int]) -> set[tuple[int, int]]:
    """(customer, candidate) pairs sharing a blocking key, for the customers ``ids``."""
    a, b = aliased(Customer), aliased(Customer)
    ia, ib = aliased(CustomerIdentifier), aliased(CustomerIdentifier)
    live = and_(b.merged_into_id.is_(None), b.erased_at.is_(None), b.id != a.id)
    blocks = [
        select(a.id, b.id).join(b, and_(b.birthday_index == a.birthday_index, live))
        .where(a.id.in_(ids), a.birthday_index.is_not(None)),
        select(a.id, b.id).join(b, and_(
            func.lower(b.last_name) == func.lower(a.last_name),
            func.lower(func.substr(b.first_name, 1, 1)) ==
            func.lower(func.substr(a.first_name, 1, 1)), live))
        .where(a.id.in_(ids), a.last_name.is_not(None)),
        select(a.id, b.id).select_from(a)
        .join(ia, and_(ia.customer_id == a.id, ia.kind == "phone"))
        .join(ib, and_(ib.kind == "phone", ib.fragment == ia.fragment))
        .join(b, and_(b.id == ib.customer_id, live)).where(a.id.in_(ids)),
        select(a.id, b.id).select_from(a)
        .join(ia, and_(ia.customer_id == a.id, ia.kind == "email"))
        .join(ib, and_(ib.kind == "email", ib.fragment == ia.fragment))
        .join(b, and_(b.id == ib.customer_id, live)).where(a.id.in_(ids)),
        select(a.id, b.id).select_from(a)
        .join(ia, and_(ia.customer_id == a.id, ia.alike.is_not(None)))
        .join(ib, ib.alike == ia.alike)
        .join(b, and_(b.id == ib.customer_id, live)).where(a.id.in_(ids)),
    ]
    return {(x, y) for x, y in db.session.execute(union(*blocks))}


def _name(c: Customer) -> str:
    return " ".join(p for p in (c.first_name, c.last_name) if p).lower()


def _look_alike_reason(what: str, one: str, other: str) -> str:
    chars = list(dict.fromkeys(look_alikes(one) + look_alikes(other)))  # each once
    return f"look-alike {what} ({', '.join(chars)})" if chars else f"look-alike {what}"


def score(one: Customer, other: Customer) -> tuple[int, list[str]]:
    points, reasons = 0, []
    name_one, name_other = _name(one), _name(other)
    if name_one and name_other:
        similarity = fuzz.token_sort_ratio(name_one, name_other)
        if similarity < 90 and skeleton(name_one) == skeleton(name_other):
            points, reasons = points + 35, [
                *reasons, _look_alike_reason("name", name_one, name_other)]
        elif similarity >= 90:
            points, reasons = points + 35, [*reasons, "same name"]
        elif similarity >= 75:
            points, reasons = points + 20, [*reasons, f"similar name ({similarity:.0f})"]
    if one.birthday and one.birthday == other.birthday:
        points, reasons = points + 30, [*reasons, "same birthday"]
    phones = [(p, q) for p in _ids(one, "phone") for q in _ids(other, "phone")]
    if any(p[-7:] == q[-7:] for p, q in phones):
        points, reasons = points + 25, [*reasons, "phone numbers end alike"]
    emails = [(p, q) for p in _ids(one, "email") for q in _ids(other, "email")]
    alike = next(((p, q) for p, q in emails if p != q and skeleton(p) == skeleton(q)), None)
    if alike:  # one address made to look like the other: as strong as a shared one
        points, reasons = points + 60, [*reasons, _look_alike_reason("email", *alike)]
    else:
        best = max((fuzz.ratio(p.split("@")[0], q.split("@")[0]) for p, q in emails),
                   default=0)
        if best >= 85:
            points, reasons = points + 25, [*reasons, f"similar email ({best:.0f})"]
    return min(points, 100), reasons


def _ids(c: Customer, kind: str) -> list[str]:
    return [i.value for i in c.identifiers if i.kind == kind]


def find(ids: list[int]) -> dict[int, list[Match]]:
    """Likely duplicates of each customer in ``ids``, best first: three queries in all."""
    pairs = _candidate_pairs(ids)
    involved = {x for pair in pairs for x in pair}
    people = {c.id: c for c in db.session.scalars(
        select(Customer).where(Customer.id.in_(involved))
        .options(selectinload(Customer.identifiers)))}
    found: dict[int, list[Match]] = {i: [] for i in ids}
    for cid, other in sorted(pairs):
        if len(found[cid]) >= MAX_CANDIDATES:
            continue
        points, reasons = score(people[cid], people[other])
        if points >= THRESHOLD:
            found[cid].append(Match(people[other], points, reasons))
    for matches in found.values():
        matches.sort(key=lambda m: (-m.score, m.customer.id))
    return found


def record_suggestions(since: datetime | None = None, batch: int = 500) -> int:
    """The nightly job: suggestions for customers changed since ``since`` (default: the
    last day), kept for marketers to review. Safe to run twice."""
    since = since or utcnow() - timedelta(days=1)
    changed = list(db.session.scalars(select(Customer.id).where(
        Customer.updated_at >= since, Customer.merged_into_id.is_(None),
        Customer.erased_at.is_(None)).order_by(Customer.id)))
    made = 0
    for start in range(0, len(changed), batch):
        rows = [{"customer_id": cid, "other_id": m.customer.id, "score": m.score,
                 "reasons": m.reasons, "created_at": utcnow()}
                for cid, matches in find(changed[start:start + batch]).items()
                for m in matches]
        if rows:
            db.session.execute(insert_ignoring_conflicts(
                DuplicateSuggestion, "customer_id", "other_id"), rows)
            made += len(rows)
    return made
