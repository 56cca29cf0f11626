"""The sender: drains the outbox to Twilio (the state machine is in ``campaigns.outbox``).

It owns its transactions, unlike service functions: a claim must be committed before
Twilio is called, and each batch's outcomes are committed as soon as they are known.
Why a message is never sent twice:

1. ``claim`` moves due messages to ``sending`` with a fresh token in one UPDATE (rows
   locked with SKIP LOCKED on PostgreSQL; SQLite has one writer) and commits. Only the
   holder of the token may record an outcome (every write names it).
2. A message is sent once per claim. Its outcome is written with the claim token; an
   unclear outcome (timeout, dropped connection, 5xx) makes it ``in_doubt``, never
   ``queued``.
3. If the sender dies after Twilio answered but before the commit, the message stays
   ``sending``. Once its claim is older than SMS_CLAIM_TIMEOUT_SECONDS (a live sender
   starts no send after half of it), ``reconcile`` treats it as in doubt.
4. ``reconcile`` asks Twilio for the messages it has to that number: one with the same
   body, created since the claim and not already matched to another row, is this one
   (its SID is recorded); if there is none, the message was never sent and is queued
   again. If Twilio cannot be asked, nothing changes.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import requests
from flask import current_app
from sqlalchemy import and_, bindparam, or_, select, update
from twilio.base.exceptions import TwilioException

from campaigns import outbox, sms_budget
from campaigns.models import Message
from campaigns.quiet_hours import quiet_until
from campaigns.twilio_gateway import Outcome, TwilioGateway
from crm import pii
from crm.db import db, utcnow

RELEASE = Outcome("release")  # not sent: the batch ran out of time
log = logging.getLogger("campaigns.sender")


def callback_base() -> str:
    """Status callbacks name our message id: a report may arrive before the sender has
    recorded the SID."""
    return current_app.config["PUBLIC_BASE_URL"].rstrip("/") + \
        "/webhooks/twilio/status?message_id="


def send_outbox(gateway: TwilioGateway | None = None, *,
                budget_seconds: float = 50.0) -> dict[str, int]:
    """Send what is due, batch after batch, until nothing is due or the budget is spent.
    Without Twilio settings nothing is sent (messages wait in the outbox)."""
    config = current_app.config
    gateway = gateway or TwilioGateway.configured(config)
    if gateway is None:
        return {"not_configured": 1}
    report: Counter[str] = Counter(reconcile(gateway))
    report.update(outbox.hold_back(utcnow()))
    db.session.commit()
    callback = callback_base()
    deadline = time.monotonic() + budget_seconds
    with ThreadPoolExecutor(config["SMS_SEND_CONCURRENCY"],
                            thread_name_prefix="sms") as pool:
        while time.monotonic() < deadline:
            room = sms_budget.room()
            if room <= 0:
                report["held_by_cap"] += 1
                db.session.commit()  # the alert
                break
            claimed_at = utcnow()
            token, claimed = claim(claimed_at, min(config["SMS_BATCH_SIZE"], room))
            db.session.commit()
            if not claimed:
                break
            stop_at = time.monotonic() + config["SMS_CLAIM_TIMEOUT_SECONDS"] / 2

            def send(row: Any, stop_at: float = stop_at) -> Outcome:
                if time.monotonic() > stop_at:
                    return RELEASE
                if row.quiet_start:  # the campaign's own quiet hours
                    until = quiet_until(utcnow(), row.quiet_zone, row.quiet_start,
                                        row.quiet_end)
                    if until is not None:
                        return Outcome("defer", until=until)
                return gateway.send(row.to_number, row.body, f"{callback}{row.id}")

            outcomes = list(pool.map(send, claimed))
            report.update(record(token, claimed, outcomes, claimed_at))
            sms_budget.sent(sum(1 for o in outcomes if o.kind not in ("release", "defer")))
            db.session.commit()
            if any(outcome.kind == "halt" for outcome in outcomes):
                halted = next(o for o in outcomes if o.kind == "halt")
                log.error("Twilio refuses our account or settings (%s): sending stops "
                          "until they are fixed", halted.error)
                break
            if all(outcome.kind in ("release", "defer") for outcome in outcomes):
                break  # nothing could be sent: try again at the next run
    return dict(report)


def claim(now: datetime, size: int) -> tuple[str, list[Any]]:
    """Take up to ``size`` due messages that may be sent now (consent, quiet hours) for
    this sender (the caller commits)."""
    token = secrets.token_hex(8)
    due = (select(Message.id).where(Message.status == "queued",
                                    Message.next_attempt_at <= now, *outbox.sendable(now))
           .order_by(Message.next_attempt_at, Message.id).limit(size))
    if db.engine.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True, of=Message)
    rows = db.session.execute(
        update(Message).where(Message.id.in_(due.scalar_subquery()))
        .values(status="sending", claim=token, claimed_at=now, attempts=Message.attempts + 1)
        .returning(Message.id, Message.to_sealed, Message.body_sealed, Message.attempts,
                   Message.customer_id, Message.quiet_start, Message.quiet_end,
                   Message.quiet_zone)
        .execution_options(synchronize_session=False)).all()
    ring = pii.keyring()
    return token, [Claimed(row.id, ring.open("messages", "to_sealed", row.id, row.to_sealed),
                           ring.open("messages", "body_sealed", row.id, row.body_sealed),
                           row.attempts, row.customer_id, row.quiet_start, row.quiet_end,
                           row.quiet_zone)
                   for row in sorted(rows, key=lambda row: row.id)]


class Claimed(NamedTuple):
    """A claimed message, its number and text opened for the gateway."""

    id: int
    to_number: str
    body: str
    attempts: int
    customer_id: int | None
    quiet_start: str | None
    quiet_end: str | None
    quiet_zone: str | None


_RECORD = (update(Message.__table__)
           .where(Message.__table__.c.id == bindparam("m_id"),
                  Message.__table__.c.claim == bindparam("m_claim"),
                  Message.__table__.c.status == "sending")
           .values(status=bindparam("m_status"), claim=None,
                   provider_sid=bindparam("m_sid"), provider_status=bindparam("m_pstatus"),
                   attempts=bindparam("m_attempts"), next_attempt_at=bindparam("m_next"),
                   claimed_at=bindparam("m_claimed_at"), submitted_at=bindparam("m_submitted"),
                   error_code=bindparam("m_code"), error=bindparam("m_error"),
                   updated_at=bindparam("m_updated")))


def record(token: str, claimed: list[Any], outcomes: list[Outcome], claimed_at: datetime
           ) -> Counter[str]:
    """Write each claimed message's outcome, all with one executemany."""
    now = utcnow()
    max_attempts = current_app.config["SMS_MAX_ATTEMPTS"]
    rows, counts, opted_out = [], Counter[str](), []
    for row, outcome in zip(claimed, outcomes, strict=True):
        values = {"m_id": row.id, "m_claim": token, "m_sid": None, "m_pstatus": None,
                  "m_attempts": row.attempts, "m_next": now, "m_claimed_at": None,
                  "m_submitted": None, "m_code": outcome.code, "m_error": outcome.error,
                  "m_updated": now}
        status = _next_status(outcome, row.attempts, max_attempts)
        if outcome.kind == "accepted":
            values.update(m_sid=outcome.sid, m_pstatus=outcome.status, m_submitted=now)
        elif outcome.kind in ("release", "defer", "halt"):  # not sent: no attempt spent
            values["m_attempts"] = row.attempts - 1
            values["m_next"] = outcome.until or (outbox.retry_at(1, now)
                                                 if outcome.kind == "halt" else now)
        elif status == "queued":
            values["m_next"] = outbox.retry_at(row.attempts, now)
        elif status == "in_doubt":
            # Twilio is asked SMS_DOUBT_SECONDS after updated_at, for messages created
            # since the claim (the send happened after it).
            values["m_claimed_at"] = claimed_at
        if outcome.code == outbox.OPTED_OUT:
            opted_out.append(row.customer_id)
        values["m_status"] = status
        rows.append(values)
        counts[status] += 1
    if rows:
        db.session.execute(_RECORD, rows)
    outbox.opted_out(opted_out)
    return counts


def _next_status(outcome: Outcome, attempts: int, max_attempts: int) -> str:
    if outcome.kind == "accepted":
        return outbox.FROM_TWILIO.get(outcome.status or "", "submitted")
    if outcome.kind in ("release", "defer", "halt"):
        return "queued"
    if outcome.kind == "retry":
        return "queued" if attempts < max_attempts else "failed"
    return outcome.kind  # failed, in_doubt


def reconcile(gateway: TwilioGateway, limit: int = 500) -> Counter[str]:
    """Settle messages whose fate is unknown by asking Twilio (see the module's doc)."""
    config = current_app.config
    now = utcnow()
    doubtful = db.session.execute(
        select(Message.id, Message.to_sealed, Message.to_index, Message.body_sealed,
               Message.claimed_at, Message.attempts, Message.status)
        .where(or_(and_(Message.status == "in_doubt", Message.updated_at
                        <= now - timedelta(seconds=config["SMS_DOUBT_SECONDS"])),
                   and_(Message.status == "sending", Message.claimed_at
                        <= now - timedelta(seconds=config["SMS_CLAIM_TIMEOUT_SECONDS"]))))
        .order_by(Message.id).limit(limit)).all()
    counts: Counter[str] = Counter()
    ring = pii.keyring()
    for row in doubtful:
        known = set(db.session.scalars(select(Message.provider_sid).where(
            Message.to_index == row.to_index, Message.provider_sid.is_not(None))))
        try:
            found = gateway.find(ring.open("messages", "to_sealed", row.id, row.to_sealed),
                                 ring.open("messages", "body_sealed", row.id, row.body_sealed),
                                 row.claimed_at, known)
        except (TwilioException, requests.RequestException):
            counts["still_in_doubt"] += 1  # Twilio cannot be asked now: ask next time
            continue
        if found is not None:
            values: dict[str, Any] = {
                "status": outbox.FROM_TWILIO.get(found.status or "", "submitted"),
                "provider_sid": found.sid, "provider_status": found.status,
                "submitted_at": row.claimed_at, "error_code": None, "error": None}
            counts["reconciled_sent"] += 1
        elif row.attempts >= config["SMS_MAX_ATTEMPTS"]:
            values = {"status": "failed", "error_code": "gave_up"}
            counts["failed"] += 1
        else:
            values = {"status": "queued", "next_attempt_at": outbox.retry_at(row.attempts, now)}
            counts["reconciled_unsent"] += 1
        db.session.execute(
            update(Message).where(Message.id == row.id, Message.status == row.status,
                                  Message.claimed_at == row.claimed_at)
            .values(claim=None, **values).execution_options(synchronize_session=False))
        db.session.commit()
    return counts
