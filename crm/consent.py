"""Consent per channel, with its full history: every choice is an event (value, source,
store, time); the customer's current consent is the newest event per channel. Nothing
is sent on a channel without it (campaigns check ``consent_sms``/``consent_email``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy import Select, select

from crm import audit, signals
from crm.db import db, utcnow
from crm.models import ConsentEvent, Customer


def record_consent(customer: Customer, choices: dict[str, bool], source: str,
                   store_id: int | None = None, at: datetime | None = None) -> None:
    """Record explicit choices ({"sms": True, ...}) and make them current."""
    at = at or utcnow()
    before = {f"consent_{channel}": getattr(customer, f"consent_{channel}") for channel in choices}
    for channel, granted in choices.items():
        setattr(customer, f"consent_{channel}", granted)
        db.session.add(ConsentEvent(customer_id=customer.id, channel=channel, granted=granted,
                                    source=source[:40], store_id=store_id, created_at=at))
    if choices:
        audit.record("consent", "customer", customer.id, before=before,
                     after={**{f"consent_{c}": g for c, g in choices.items()},
                            "source": source[:40]})
        signals.consent_changed.send(current_app._get_current_object(),
                                     customer_id=customer.id, choices=choices, source=source)


def history(customer_ids: list[int]) -> Select[tuple[ConsentEvent]]:
    return (select(ConsentEvent).where(ConsentEvent.customer_id.in_(customer_ids))
            .order_by(ConsentEvent.created_at.desc(), ConsentEvent.id.desc()))


def latest_choices(customer_ids: list[int]) -> dict[str, dict[str, Any]]:
    """The newest explicit choice per channel among these customers' events."""
    newest: dict[str, dict[str, Any]] = {}
    for event in db.session.scalars(history(customer_ids)):
        newest.setdefault(event.channel, {"granted": event.granted, "at": event.created_at})
    return newest
