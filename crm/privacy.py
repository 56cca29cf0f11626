"""GDPR: everything held about a person, as JSON; and erasure, which removes personal
data (names, birthday, city, identifiers) but keeps purchases and the points ledger,
now anonymous, so that totals stay right. Both are rows of the audit log.

Feature packages add their part of an export through ``export_sections``: each takes
customer ids and answers a section of the export."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import current_app
from sqlalchemy import delete, select

from crm import audit, signals
from crm.consent import history
from crm.customers import PROFILE_FIELDS, get_customer
from crm.db import db, utcnow
from crm.errors import Conflict
from crm.models import Customer, CustomerIdentifier, CustomerMerge

ExportSection = Callable[[list[int]], dict[str, Any]]
export_sections: list[ExportSection] = []


def records_of(customer_id: int) -> list[int]:
    """The customer and every record merged into them."""
    return [customer_id, *db.session.scalars(
        select(Customer.id).where(Customer.merged_into_id == customer_id))]


def export(customer_id: int, actor: str) -> dict[str, Any]:
    customer = get_customer(customer_id)
    ids = records_of(customer.id)
    data: dict[str, Any] = {
        "customer": {"id": customer.id, **{f: getattr(customer, f) for f in PROFILE_FIELDS},
                     "consent": customer.consent, "created_at": customer.created_at,
                     "updated_at": customer.updated_at, "erased_at": customer.erased_at,
                     "merged_records": ids[1:]},
        "identifiers": [{"kind": i.kind, "value": i.value, "created_at": i.created_at}
                        for i in customer.identifiers],
        "consent_history": [{"channel": e.channel, "granted": e.granted, "source": e.source,
                             "created_at": e.created_at}
                            for e in db.session.scalars(history(ids))],
        "merges": [{"survivor_id": m.survivor_id, "source_id": m.source_id,
                    "created_at": m.created_at, "undone_at": m.undone_at}
                   for m in db.session.scalars(select(CustomerMerge).where(
                       CustomerMerge.survivor_id.in_(ids) | CustomerMerge.source_id.in_(ids)))],
    }
    for section in export_sections:
        data.update(section(ids))
    audit.record("export", "customer", customer.id, actor=actor,
                 after={"sections": sorted(data)})
    return data


def erase(customer_id: int, actor: str) -> Customer:
    """Erase the person's data from this record and from every record merged into it."""
    customer = get_customer(customer_id)
    if customer.merged_into_id is not None:
        raise Conflict(f"This record was merged into customer {customer.merged_into_id}: "
                       "erase that one.", merged_into=customer.merged_into_id)
    ids = records_of(customer.id)
    now = utcnow()
    for record in db.session.scalars(select(Customer).where(Customer.id.in_(ids))):
        for f in PROFILE_FIELDS:
            setattr(record, f, None)
        record.consent_sms = record.consent_email = False
        record.erased_at = now
    db.session.execute(delete(CustomerIdentifier).where(CustomerIdentifier.customer_id.in_(ids)))
    audit.record("erase", "customer", customer.id, actor=actor, after={"records": ids},
                 fields=(*PROFILE_FIELDS, "identifiers", "consent"))
    db.session.expire(customer, ["identifiers"])
    signals.customer_erased.send(current_app._get_current_object(), customer_ids=ids)
    return customer
