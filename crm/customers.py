"""Customer records: one per person, found through normalised identifiers."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

from flask import current_app
from sqlalchemy import Select, and_, bindparam, func, or_, select
from sqlalchemy.orm import selectinload

from crm import contact_changes, pii, signals
from crm.consent import history as consent_history
from crm.consent import record_consent
from crm.db import any_of, db
from crm.errors import Conflict, Invalid, NotFound
from crm.identifiers import InvalidIdentifier, is_blocked, normalize
from crm.models import Customer, CustomerIdentifier, Store, identifier_lookup
from crm.sql import Sql, Statement

# API field -> identifier kind
IDENTIFIER_FIELDS = {"email": "email", "phone": "phone", "card_number": "card"}
PROFILE_FIELDS = ("first_name", "last_name", "birthday", "city")


# Feature packages add to the profile (loyalty: tier and points balance). Each extension
# takes customer ids and answers {id: {field: value}} for all of them in one query.
ProfileExtension = Callable[[list[int]], dict[int, dict[str, Any]]]
profile_extensions: list[ProfileExtension] = []


def with_profile_extras(found: Sequence[Customer]) -> Sequence[Customer]:
    ids = [c.id for c in found]
    extras: dict[int, dict[str, Any]] = {i: {} for i in ids}
    for extension in profile_extensions:
        for cid, values in extension(ids).items():
            extras[cid].update(values)
    for customer in found:
        customer.profile_extras = extras[customer.id]
    return found


def region() -> str:
    return current_app.config["DEFAULT_REGION"]


def blocked_values() -> frozenset[str]:
    """Configured placeholder identifiers and the stores' own phones ("kind:value")."""
    phones = db.session.scalars(select(Store.phone).where(Store.phone.is_not(None)))
    return frozenset(current_app.config["BLOCKED_IDENTIFIERS"]) | {f"phone:{p}" for p in phones}


def normalize_fields(data: dict[str, Any], blocked: frozenset[str] | None = None,
                     ) -> dict[str, str | None]:
    """{kind: normalised value or None} for the identifier fields present in ``data``;
    raise Invalid naming every bad field at once. With ``blocked`` given, placeholder
    values are refused too."""
    found: dict[str, str | None] = {}
    errors: dict[str, list[str]] = {}
    for field, kind in IDENTIFIER_FIELDS.items():
        if field not in data:
            continue
        if data[field] is None:
            found[kind] = None
            continue
        try:
            found[kind] = normalize(kind, data[field], region())
        except InvalidIdentifier as e:
            errors[field] = [str(e)]
            continue
        if blocked is not None and is_blocked(kind, found[kind], blocked):
            errors[field] = ["A placeholder many people share: it cannot identify anyone."]
    if errors:
        raise Invalid("Some identifiers are not valid: see errors.", errors=errors)
    return found


def owners(pairs: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Which customer holds each (kind, value): one query for all of them (by their
    blind indexes)."""
    if not pairs:
        return {}
    by_kind: dict[str, list[str]] = {}
    pair_of: dict[tuple[str, str], tuple[str, str]] = {}
    for kind, value in pairs:
        lookup = identifier_lookup(kind, value)
        pair_of[(kind, lookup)] = (kind, value)
        by_kind.setdefault(kind, []).append(lookup)
    rows = db.session.execute(
        select(CustomerIdentifier.kind, CustomerIdentifier.lookup,
               CustomerIdentifier.customer_id)
        .where(or_(*(and_(CustomerIdentifier.kind == kind,
                          any_of(CustomerIdentifier.lookup, lookups))
                     for kind, lookups in by_kind.items())))
    )
    return {pair_of[(kind, lookup)]: customer_id for kind, lookup, customer_id in rows}


def _ensure_free(identifiers: dict[str, str | None], customer_id: int | None) -> None:
    pairs = [(kind, value) for kind, value in identifiers.items() if value is not None]
    for (kind, _value), owner in owners(pairs).items():
        if owner != customer_id:
            field = next(f for f, k in IDENTIFIER_FIELDS.items() if k == kind)
            raise Conflict(
                f"This {field} belongs to customer {owner}.",  # no value in errors
                existing_customer_id=owner,
                field=field,
            )


def create_customer(data: dict[str, Any], source: str = "api") -> Customer:
    identifiers = normalize_fields(data, blocked_values())
    if not any(identifiers.values()):
        raise Invalid(
            "A customer needs at least one of email, phone or card_number.",
            errors={"_schema": ["Give at least one of email, phone or card_number."]},
        )
    _ensure_free(identifiers, None)
    customer = Customer(
        **{f: data.get(f) for f in PROFILE_FIELDS},
        identifiers=[
            CustomerIdentifier(kind=kind, value=value)
            for kind, value in identifiers.items()
            if value is not None
        ],
    )
    db.session.add(customer)
    db.session.flush()
    record_consent(customer, data.get("consent") or {}, source)
    signals.customer_created.send(current_app._get_current_object(), customer=customer,
                                  referral_code=data.get("referral_code"),
                                  referral_optional=data.get("referral_optional", False))
    return customer


def get_customer(customer_id: int) -> Customer:
    customer = db.session.get(
        Customer, customer_id, options=[selectinload(Customer.identifiers)]
    )
    if customer is None:
        raise NotFound(f"No customer has the id {customer_id}.")
    return customer


def update_customer(customer_id: int, data: dict[str, Any], source: str = "api") -> Customer:
    """Partial update. Giving an identifier replaces that kind's identifiers; null
    removes them."""
    customer = get_customer(customer_id)
    if customer.merged_into_id is not None:
        raise Conflict(f"This record was merged into customer {customer.merged_into_id}.",
                       merged_into=customer.merged_into_id)
    if customer.erased_at is not None:
        raise Conflict("This customer's data was erased; create a new customer instead.")
    identifiers = normalize_fields(data, blocked_values())
    _ensure_free(identifiers, customer.id)
    contact_changed = False
    for kind, value in identifiers.items():
        current = [i for i in customer.identifiers if i.kind == kind]
        if [i.value for i in current] == ([value] if value else []):
            continue
        contact_changed = contact_changed or kind in contact_changes.WATCHED
        for old in current:
            customer.identifiers.remove(old)
        db.session.flush()  # free the unique (kind, value) before re-adding
        if value is not None:
            customer.identifiers.append(CustomerIdentifier(kind=kind, value=value))
    for field in PROFILE_FIELDS:
        if field in data:
            setattr(customer, field, data[field])
    record_consent(customer, data.get("consent") or {}, source)
    db.session.flush()
    if contact_changed:
        contact_changes.mark(customer.id, [(i.kind, i.value) for i in customer.identifiers])
    return customer


def _like_prefix(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def _holders(kind: str, value: str) -> Select[tuple[int]]:
    return select(CustomerIdentifier.customer_id).where(
        CustomerIdentifier.kind == kind,
        CustomerIdentifier.lookup == identifier_lookup(kind, value))


# Filters feature packages add to the customer search: name -> condition for a value.
customer_filters: dict[str, Callable[[Any], Any]] = {}


def search_customers(filters: dict[str, Any]) -> Select[tuple[Customer]]:
    """A select of the customers matching every filter given. ``q`` matches an exact
    email, phone or card, or names whose words start with the words of ``q``."""
    stmt = select(Customer).order_by(Customer.id)
    for name in ("segment_id",):
        if filters.get(name) is not None:
            if name not in customer_filters:
                raise Invalid(f"{name} is not available here.", errors={name: ["Unknown."]})
            stmt = stmt.where(customer_filters[name](filters[name]))
    identifiers = normalize_fields(filters)
    for kind, value in identifiers.items():
        if value is not None:
            stmt = stmt.where(Customer.id.in_(_holders(kind, value)))
    q = (filters.get("q") or "").strip()
    if q:
        matches = []
        for kind in ("email", "phone", "card"):
            with contextlib.suppress(InvalidIdentifier):
                matches.append(Customer.id.in_(_holders(kind, normalize(kind, q, region()))))
        words = q.lower().split()
        matches.append(
            and_(
                *(
                    or_(
                        func.lower(Customer.first_name).like(_like_prefix(w), escape="\\"),
                        func.lower(Customer.last_name).like(_like_prefix(w), escape="\\"),
                    )
                    for w in words
                )
            )
        )
        stmt = stmt.where(or_(*matches))
    return stmt.options(selectinload(Customer.identifiers))


LOOKUPS = ("id", "identifier")  # the ways a client points at a customer


def customer_ref(lookup: str) -> Any:
    """The customer a ``lookup`` finds, as a scalar subquery for hand-written statements
    (crm/sql.py), with the parameters ``customer_lookup`` gives: a record merged away
    gives its survivor."""
    if lookup == "id":
        return select(func.coalesce(Customer.merged_into_id, Customer.id)).where(
            Customer.id == bindparam("ref_id")).scalar_subquery()
    return select(CustomerIdentifier.customer_id).where(
        CustomerIdentifier.kind == bindparam("ref_kind"),
        CustomerIdentifier.lookup == bindparam("ref_lookup")).scalar_subquery()


def customer_lookup(ref: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """How to find the customer a client points at with ``{"id": ...}`` or one
    identifier (``email``, ``phone``, ``card_number``): the lookup (one of ``LOOKUPS``)
    and its parameters (an identifier's blind index: one indexed read of the unique
    ``(kind, lookup)``); None when ``ref`` names nothing to look for. A malformed
    identifier is an Invalid error."""
    if ref.get("id") is not None:
        return "id", {"ref_id": ref["id"]}
    identifiers = {k: v for k, v in normalize_fields(ref).items() if v is not None}
    if not identifiers:
        return None
    kind, value = next(iter(identifiers.items()))
    return "identifier", {"ref_kind": kind, "ref_lookup": identifier_lookup(kind, value)}


_FIND = {lookup: Statement(select(customer_ref(lookup))) for lookup in LOOKUPS}


def find_customer(ref: dict[str, Any]) -> Customer | None:
    """The customer ``ref`` points at (see ``customer_lookup``), or None."""
    lookup = customer_lookup(ref)
    if lookup is None:
        return None
    with Sql() as sql:
        customer_id = sql.run(_FIND[lookup[0]], lookup[1]).scalar()
    return None if customer_id is None else db.session.get(Customer, customer_id)


def phones_of(customer_ids: list[int]) -> dict[int, str]:
    """Each customer's newest phone, opened: one query for all of them."""
    rows = db.session.execute(
        select(CustomerIdentifier.customer_id, CustomerIdentifier.id, CustomerIdentifier.sealed)
        .where(any_of(CustomerIdentifier.customer_id, customer_ids),
               CustomerIdentifier.kind == "phone")
        .order_by(CustomerIdentifier.id))
    ring = pii.keyring()
    return {cid: ring.open("customer_identifiers", "sealed", iid, sealed)
            for cid, iid, sealed in rows}


def set_consent(customer_id: int, choices: dict[str, bool], source: str,
                store: Store | None = None) -> dict[str, Any]:
    """Record a customer's choices per channel; answer the current state and history."""
    customer = get_customer(customer_id)
    record_consent(customer, choices, source, store.id if store else None)
    db.session.flush()
    events = db.session.scalars(consent_history([customer.id]).limit(100)).all()
    return {**customer.consent, "history": events}
