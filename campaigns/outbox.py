"""The SMS outbox and its state machine.

A message is queued in the same transaction as the decision to send it. The sender
(``campaigns.sender``) then moves it, and only it, along these states:

    queued --claim--> sending --Twilio accepted--> submitted --callbacks--> sent,
                                                    delivered, undelivered, failed, read
    sending --definitely not sent (429, refused connection)--> queued (later)
    sending --refused for good (invalid number, opted out)--> failed
    sending --no clear answer (timeout, 5xx) or the sender died--> in_doubt
    in_doubt --Twilio lists it--> submitted;  --Twilio does not--> queued
    queued --no SMS consent at send time--> skipped

The claim is committed before Twilio is called, and every later write names the claim,
so a message is only ever in one sender's hands. Twilio has no idempotency key for
messages; so when the outcome of a send is unknown, it is never simply retried: Twilio's
own list of messages to that number is checked first (``sender.reconcile``). Status
callbacks only ever move a message forward (they may arrive out of order).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import Select, and_, or_, select, update

from campaigns.models import Message, MessageEvent
from campaigns.quiet_hours import parse_window, quiet_until
from crm.consent import record_consent
from crm.db import db, utcnow
from crm.errors import get_or_404
from crm.models import Customer, Store

# How far along a message is; a status callback never moves one backwards.
RANK = {"queued": 0, "sending": 1, "in_doubt": 1, "submitted": 2, "sent": 3,
        "delivered": 4, "undelivered": 4, "failed": 4, "canceled": 4, "read": 5,
        "skipped": 9}
# Twilio's message statuses, as ours.
FROM_TWILIO = {"accepted": "submitted", "scheduled": "submitted", "queued": "submitted",
               "sending": "submitted", "sent": "sent", "delivered": "delivered",
               "undelivered": "undelivered", "failed": "failed", "read": "read",
               "canceled": "canceled"}
OPTED_OUT = "21610"  # Twilio: the number replied STOP; nothing may be sent to it
EXEMPT_FROM_QUIET = ("transactional", "test")


def queue_test(body: str, to: str, campaign_id: int | None = None) -> Message:
    """A test of a campaign's message to a phone a console user typed (their own): sent
    at once, whatever the hour, with no customer behind it (so no consent to check)."""
    message = Message(customer_id=None, to_number=to, body=body, purpose="test",
                      campaign_id=campaign_id, next_attempt_at=utcnow())
    db.session.add(message)
    return message


def queue(customer: Customer, body: str, purpose: str, *, to: str | None = None,
          store_id: int | None = None, campaign_id: int | None = None,
          not_before: datetime | None = None) -> Message:
    """Put a message in the outbox (the caller commits). Consent and quiet hours are
    checked when it is sent, not now: they may change in between."""
    message = Message(customer_id=customer.id, to_number=to or customer.phone or "",
                      body=body, purpose=purpose, store_id=store_id,
                      campaign_id=campaign_id, next_attempt_at=not_before or utcnow())
    db.session.add(message)
    return message


def list_messages(filters: dict[str, Any]) -> Select[tuple[Message]]:
    stmt = select(Message).order_by(Message.id.desc())
    for name in ("customer_id", "campaign_id", "status", "purpose"):
        if filters.get(name) is not None:
            stmt = stmt.where(getattr(Message, name) == filters[name])
    return stmt


def get_message(message_id: int) -> Message:
    return get_or_404(Message, message_id, "message")


def delivery_history(message_id: int) -> list[MessageEvent]:
    """The delivery reports about a message, in the order they came."""
    return list(db.session.scalars(select(MessageEvent)
                                   .where(MessageEvent.message_id == message_id)
                                   .order_by(MessageEvent.id)))


def _due(now: datetime) -> Any:
    return and_(Message.status == "queued", Message.next_attempt_at <= now)


def quiet_now(now: datetime) -> tuple[dict[int, datetime], datetime | None]:
    """The stores in their quiet hours now, with when those end; and when QUIET_HOURS
    ends for messages with no store (None: not quiet now)."""
    config = current_app.config
    default = parse_window(config["QUIET_HOURS"])
    no_store = quiet_until(now, config["DEFAULT_TIMEZONE"], *default) if default else None
    stores: dict[int, datetime] = {}
    for store_id, zone, start, end in db.session.execute(
            select(Store.id, Store.timezone, Store.quiet_start, Store.quiet_end)):
        window = (start, end) if start and end else default
        until = quiet_until(now, zone, *window) if window else None
        if until is not None:
            stores[store_id] = until
    return stores, no_store


def sendable(now: datetime) -> list[Any]:
    """What a due message must meet to be claimed: its customer has SMS consent now (a
    test has no customer), it has a number, and it is not in quiet hours (unless
    transactional or a test)."""
    has_consent = or_(Message.purpose == "test", select(Customer.id).where(
        Customer.id == Message.customer_id, Customer.consent_sms.is_(True)).exists())
    stores, no_store = quiet_now(now)
    outside_quiet = [Message.purpose.in_(EXEMPT_FROM_QUIET),
                     and_(Message.store_id.is_not(None), Message.store_id.not_in(stores))]
    if no_store is None:
        outside_quiet.append(Message.store_id.is_(None))
    return [has_consent, Message.to_index.is_not(None), or_(*outside_quiet)]


def hold_back(now: datetime) -> dict[str, int]:
    """Once per sender run: skip due messages whose customer has no SMS consent now (or
    no number), and move those in quiet hours to the end of them, so that batches
    never read them again. Set-based: a statement for each."""
    no_consent = select(Customer.id).where(Customer.consent_sms.is_(False))
    skipped = db.session.execute(
        update(Message).where(_due(now), Message.purpose != "test",
                              Message.customer_id.in_(no_consent)
                              | Message.customer_id.is_(None))
        .values(status="skipped", error_code="no_consent",
                error="No SMS consent when it was due to be sent.")
        .execution_options(synchronize_session=False)).rowcount
    skipped += db.session.execute(
        update(Message).where(_due(now), Message.to_index.is_(None))
        .values(status="skipped", error_code="no_phone", error="No phone number to send to.")
        .execution_options(synchronize_session=False)).rowcount
    deferred = 0
    stores, no_store = quiet_now(now)
    windows = [(Message.store_id == store_id, until) for store_id, until in stores.items()]
    if no_store is not None:
        windows.append((Message.store_id.is_(None), no_store))
    for which, until in windows:
        deferred += db.session.execute(
            update(Message).where(_due(now), which,
                                  Message.purpose.not_in(EXEMPT_FROM_QUIET))
            .values(next_attempt_at=until)
            .execution_options(synchronize_session=False)).rowcount
    return {"skipped": skipped, "deferred": deferred}


def apply_status(message_id: int | None, sid: str, twilio_status: str,
                 error_code: str | None = None) -> Message | None:
    """A delivery report from Twilio: move the message forward, never back. Found by our
    id (in the callback URL: the report may come before the sender recorded the SID)
    or else by the SID."""
    wanted = Message.id == message_id if message_id is not None else Message.provider_sid == sid
    message = db.session.scalar(select(Message).where(wanted).with_for_update()
                                .execution_options(populate_existing=True))
    status = FROM_TWILIO.get(twilio_status)
    if message is None:
        return message
    if message.provider_sid is not None and message.provider_sid != sid:
        return message  # a report about some other message: ignore it
    moves = status is not None and RANK[status] > RANK[message.status]
    db.session.add(MessageEvent(message_id=message.id, provider_status=twilio_status,
                                status=status, applied=moves, error_code=error_code))
    if status is None:
        db.session.flush()
        return message
    if message.provider_sid is None:
        message.provider_sid = sid
    if moves:
        message.status = status
        message.provider_status = twilio_status
        message.claim = None
        message.submitted_at = message.submitted_at or utcnow()
        if error_code:
            message.error_code = error_code
            if error_code == OPTED_OUT:
                opted_out([message.customer_id])
    db.session.flush()
    return message


def opted_out(customer_ids: list[int | None]) -> None:
    """Twilio says these numbers opted out: withdraw SMS consent, as a STOP would."""
    ids = [i for i in customer_ids if i is not None]
    for customer in db.session.scalars(select(Customer).where(Customer.id.in_(ids))):
        if customer.consent_sms:
            record_consent(customer, {"sms": False}, source=f"twilio:{OPTED_OUT}")


def retry_at(attempts: int, now: datetime) -> datetime:
    base = current_app.config["SMS_RETRY_SECONDS"]
    return now + timedelta(seconds=min(base * 2 ** max(attempts - 1, 0), 3600.0))
