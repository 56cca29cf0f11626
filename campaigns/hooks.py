"""Outgoing webhooks (Standard Webhooks): endpoints and the events written for them.

``emit`` writes an event and one delivery per subscribed enabled endpoint in the
caller's transaction, so a change that rolls back leaves no event. Which endpoints
subscribe to what is kept per process for SETTINGS_CACHE_SECONDS (changes made through
this process show at once): an event nobody subscribes to costs no statement, which
matters on the till's sale. A customer's events carry a ``sequence`` taken from a
counter row updated in the same statement that reads it (the row stays locked until
the transaction ends), so sequences follow the order in which changes commit.

Bodies are ``{type, timestamp, data}`` with ids and figures only, never a personal
value: a receiver that needs the customer fetches it with its own key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import Select, insert, select, text, update
from sqlalchemy.orm import selectinload

from campaigns import hook_addresses
from campaigns.hook_models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from crm.db import db, utcnow
from crm.errors import Invalid, get_or_404

EVENT_TYPES = (
    "purchase.recorded", "purchase.returned", "customer.created", "customer.points.changed",
    "customer.tier.changed", "coupon.redeemed", "customer.merged", "customer.unmerged",
    "customer.consent.changed", "customer.erased", "survey.answered", "referral.qualified",
    "referral.rewarded", "referral.reversed", "security.alert", "webhook.test",
)


def matches(pattern: str, event_type: str) -> bool:
    """``*``, an exact name, or a prefix wildcard (``purchase.*``)."""
    if pattern in ("*", event_type):
        return True
    return pattern.endswith(".*") and event_type.startswith(pattern[:-1])


def check_patterns(patterns: list[str]) -> None:
    bad = [p for p in patterns if not any(matches(p, t) for t in EVENT_TYPES)]
    if bad or not patterns:
        message = (f"Unknown event types: {', '.join(bad)}." if bad else
                   "Name at least one event type.")
        raise Invalid(message + " Known: " + ", ".join(EVENT_TYPES) + ", or wildcards "
                      "such as purchase.* and *.", errors={"event_types": [message]})


# --- which endpoints want what, per process ---------------------------------------

@dataclass(frozen=True)
class _Subscriptions:
    endpoints: tuple[tuple[int, tuple[str, ...]], ...]
    taken_at: float


_cache: _Subscriptions | None = None


def forget() -> None:
    """Endpoints changed: the next event reads them afresh."""
    global _cache
    _cache = None


def subscribers(event_type: str) -> list[int]:
    """The enabled endpoints subscribed to ``event_type`` (as of at most
    SETTINGS_CACHE_SECONDS ago)."""
    global _cache
    ttl = current_app.config["SETTINGS_CACHE_SECONDS"]
    if _cache is None or time.monotonic() - _cache.taken_at >= ttl:
        rows = db.session.execute(select(WebhookEndpoint.id, WebhookEndpoint.event_types)
                                  .where(WebhookEndpoint.enabled)).all()
        _cache = _Subscriptions(tuple((i, tuple(types)) for i, types in rows),
                                time.monotonic())
    return [endpoint_id for endpoint_id, patterns in _cache.endpoints
            if any(matches(p, event_type) for p in patterns)]


def wanted(event_type: str) -> bool:
    return bool(subscribers(event_type))


# --- events -------------------------------------------------------------------------

_EVENTS, _DELIVERIES = WebhookEvent.__table__, WebhookDelivery.__table__


@dataclass(frozen=True)
class Emitted:
    id: int
    msg_id: str
    body: str


_NEXT_SEQUENCE = text(
    "INSERT INTO webhook_sequences (customer_id, last) VALUES (:customer_id, 1) "
    "ON CONFLICT (customer_id) DO UPDATE SET last = webhook_sequences.last + 1 "
    "RETURNING last")


def emit(event_type: str, data: dict[str, Any], *, customer_id: int | None = None,
         endpoint_ids: list[int] | None = None) -> Emitted | None:
    """Write the event and its deliveries in the caller's transaction, if any enabled
    endpoint subscribes (``endpoint_ids``: to these endpoints only, whatever they
    subscribe to). ``data`` holds ids and figures only."""
    targets = subscribers(event_type) if endpoint_ids is None else endpoint_ids
    if not targets:
        return None
    now = utcnow()
    body = dict(data)
    if customer_id is not None:
        body["customer_id"] = customer_id
        body["sequence"] = db.session.scalar(_NEXT_SEQUENCE, {"customer_id": customer_id})
    msg_id = f"msg_{uuid.uuid4().hex}"
    payload = json.dumps({"type": event_type, "timestamp": now.isoformat(), "data": body},
                         separators=(",", ":"), default=str)
    # Core statements: no flush of the caller's session in the middle of its change.
    event_id = db.session.scalar(
        insert(_EVENTS).values(msg_id=msg_id, type=event_type, customer_id=customer_id,
                               sequence=body.get("sequence"), body=payload, created_at=now)
        .returning(_EVENTS.c.id))
    db.session.execute(insert(_DELIVERIES), [
        {"event_id": event_id, "endpoint_id": endpoint_id, "status": "queued", "attempts": 0,
         "next_attempt_at": now, "created_at": now, "updated_at": now}
        for endpoint_id in targets])
    return Emitted(event_id, msg_id, payload)


# --- signing (https://www.standardwebhooks.com) -------------------------------------

def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.{body}".encode()
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def signature(endpoint: Any, msg_id: str, timestamp: int, body: str, now: datetime) -> str:
    """Every valid secret's signature, space separated (two during a rotation)."""
    secrets_ = [endpoint.secret]
    if endpoint.previous_secret and endpoint.previous_secret_until and \
            endpoint.previous_secret_until > now:
        secrets_.append(endpoint.previous_secret)
    return " ".join(sign(s, msg_id, timestamp, body) for s in secrets_)


# --- endpoints ----------------------------------------------------------------------

def list_endpoints() -> Select[tuple[WebhookEndpoint]]:
    return select(WebhookEndpoint).order_by(WebhookEndpoint.id)


def get_endpoint(endpoint_id: int) -> WebhookEndpoint:
    return get_or_404(WebhookEndpoint, endpoint_id, "webhook endpoint")


def create_endpoint(data: dict[str, Any]) -> WebhookEndpoint:
    hook_addresses.check_at_registration(data["url"])
    check_patterns(data["event_types"])
    forget()
    endpoint = WebhookEndpoint(url=data["url"], event_types=data["event_types"],
                               description=data.get("description"),
                               enabled=data.get("enabled", True), secret=new_secret())
    db.session.add(endpoint)
    db.session.flush()
    return endpoint


def update_endpoint(endpoint_id: int, data: dict[str, Any]) -> WebhookEndpoint:
    endpoint = get_endpoint(endpoint_id)
    if "url" in data:
        hook_addresses.check_at_registration(data["url"])
    if "event_types" in data:
        check_patterns(data["event_types"])
    forget()
    for field, value in data.items():
        setattr(endpoint, field, value)
    if data.get("enabled"):
        endpoint.disabled_reason, endpoint.failing_since = None, None
    db.session.flush()
    return endpoint


def delete_endpoint(endpoint_id: int) -> None:
    endpoint = get_endpoint(endpoint_id)
    forget()
    db.session.delete(endpoint)
    db.session.flush()


def rotate_secret(endpoint_id: int, overlap_hours: float | None = None) -> WebhookEndpoint:
    """A new secret; the one it replaces keeps signing during the overlap."""
    endpoint = get_endpoint(endpoint_id)
    hours = current_app.config["WEBHOOK_SECRET_OVERLAP_HOURS"] if overlap_hours is None \
        else overlap_hours
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_until = utcnow() + timedelta(hours=hours)
    endpoint.secret = new_secret()
    db.session.flush()
    return endpoint


def send_test(endpoint_id: int) -> Emitted:
    endpoint = get_endpoint(endpoint_id)
    event = emit("webhook.test", {"endpoint_id": endpoint.id}, endpoint_ids=[endpoint.id])
    assert event is not None
    return event


def list_deliveries(endpoint_id: int, status: str | None) -> Select[tuple[WebhookDelivery]]:
    get_endpoint(endpoint_id)
    stmt = (select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
            .options(selectinload(WebhookDelivery.event), selectinload(WebhookDelivery.history))
            .order_by(WebhookDelivery.id.desc()))
    return stmt if status is None else stmt.where(WebhookDelivery.status == status)


def resend(delivery_id: int) -> WebhookDelivery:
    """Queue a delivery again, now: same event, same webhook-id, a fresh schedule."""
    delivery = get_or_404(WebhookDelivery, delivery_id, "webhook delivery")
    if delivery.status != "sending":
        delivery.status, delivery.attempts, delivery.next_attempt_at = "queued", 0, utcnow()
        delivery.claim = None
    db.session.flush()
    return delivery


def recover(endpoint_id: int, since: datetime) -> int:
    """Queue again every failed delivery of the endpoint created since ``since``."""
    get_endpoint(endpoint_id)
    return db.session.execute(
        update(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id,
                                      WebhookDelivery.status == "failed",
                                      WebhookDelivery.created_at >= since)
        .values(status="queued", attempts=0, next_attempt_at=utcnow(), claim=None)
        .execution_options(synchronize_session=False)).rowcount
