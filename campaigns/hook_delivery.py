"""The webhook delivery job: sends queued deliveries, several in flight, and records every
attempt. It runs on the single active scheduler and owns its transactions, as the SMS
sender does (``campaigns.sender``):

1. ``claim`` moves due deliveries of enabled endpoints to ``sending`` with a fresh token
   in one UPDATE (SKIP LOCKED on PostgreSQL; SQLite has one writer) and commits, so two
   schedulers never hold one delivery. Only the holder of the token records its outcome.
2. Each delivery is sent once per claim: resolved, every address checked
   (``campaigns.hook_addresses``), and sent to the checked address itself with the URL's
   Host and TLS server name. Redirects are never followed (a 3xx is a failure).
3. 2xx is success and is never sent again (unless resent by hand). 410 Gone disables the
   endpoint. Anything else is retried on the Standard Webhooks schedule with jitter,
   then ``failed``; an endpoint that has failed for WEBHOOK_DISABLE_AFTER_DAYS with no
   success is disabled and a security alert raised.
4. A scheduler killed mid-batch leaves its deliveries ``sending``; once the claim is
   older than WEBHOOK_CLAIM_TIMEOUT_SECONDS they are queued again (a live sender starts
   no send after half of it). Such a delivery may have reached the receiver with its
   answer lost: delivery is at least once, and the unchanged ``webhook-id`` lets the
   receiver drop the copy.
"""

from __future__ import annotations

import functools
import http.client
import random
import secrets
import socket
import ssl
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import and_, bindparam, delete, insert, select, update

from campaigns import hook_addresses, hooks
from campaigns.hook_models import (
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from crm.alerts import raise_alert
from crm.db import db, utcnow

# Standard Webhooks' retry schedule: the wait after the 1st, 2nd, ... failed attempt.
SCHEDULE = (5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 14 * 3600, 20 * 3600,
            24 * 3600)
JITTER = 0.1  # each wait is stretched by up to this fraction
HEAD = 500  # characters of an answer kept with the attempt
USER_AGENT = "crm-loyalty-webhooks/1"

_D = WebhookDelivery.__table__


@dataclass(frozen=True)
class Result:
    status_code: int | None
    duration_ms: int
    error: str | None = None
    head: str | None = None
    started_at: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the checked address, whatever the host name resolves to now."""

    def __init__(self, host: str, address: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, address: str, port: int, timeout: float,
                 context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self.address = address

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


@functools.cache
def _tls(ca_file: str | None) -> ssl.SSLContext:
    """The system's CA certificates (or WEBHOOK_CA_FILE's), loaded on first use (not at
    import: ~80 ms)."""
    return ssl.create_default_context(cafile=ca_file)


def post(url: str, body: str, headers: dict[str, str], timeout: float,
         allow_private: bool, ca_file: str | None = None) -> Result:
    """One attempt: resolve and check, connect to the checked address, POST, read the
    start of the answer. Never raises."""
    started, clock = utcnow(), time.monotonic()

    def took() -> int:
        return int((time.monotonic() - clock) * 1000)

    try:
        target = hook_addresses.resolve_with(url, allow_private)
    except hook_addresses.Refused as exc:
        return Result(None, took(), f"refused: {exc}"[:300], started_at=started)
    last_error = "no address"
    for address in target.addresses:
        if target.scheme == "https":
            conn: http.client.HTTPConnection = _PinnedHTTPSConnection(
                target.host, address, target.port, timeout, _tls(ca_file))
        else:
            conn = _PinnedHTTPConnection(target.host, address, target.port, timeout)
        try:
            conn.request("POST", target.path, body=body.encode(), headers={
                **headers, "Content-Type": "application/json", "User-Agent": USER_AGENT})
            answer = conn.getresponse()
            head = answer.read(HEAD * 2).decode("utf-8", "replace")[:HEAD]
            return Result(answer.status, took(), None, head, started)
        except (OSError, http.client.HTTPException) as exc:
            last_error = f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, ConnectionRefusedError | socket.gaierror):
                break  # it may have arrived: do not send it to another address too
        finally:
            conn.close()
    return Result(None, took(), last_error[:300], started_at=started)


def deliver(now: datetime | None = None, *, budget_seconds: float = 50.0) -> dict[str, int]:
    """Send what is due, batch after batch, until nothing is due or the budget is spent
    (``now``: a fake clock for the schedule, in tests)."""
    config = current_app.config
    clock = now or utcnow()
    report: Counter[str] = Counter(requeued=release_stale(clock))
    db.session.commit()
    deadline = time.monotonic() + budget_seconds
    timeout, allow = config["WEBHOOK_TIMEOUT_SECONDS"], hook_addresses.allow_private()
    ca_file = config["WEBHOOK_CA_FILE"] or None
    with ThreadPoolExecutor(config["WEBHOOK_CONCURRENCY"], thread_name_prefix="hook") as pool:
        while time.monotonic() < deadline:
            clock = now or utcnow()
            token, claimed = claim(clock, config["WEBHOOK_BATCH_SIZE"])
            db.session.commit()
            if not claimed:
                break
            stop_at = time.monotonic() + config["WEBHOOK_CLAIM_TIMEOUT_SECONDS"] / 2

            def send(row: Any, stop_at: float = stop_at) -> Result | None:
                if time.monotonic() > stop_at:
                    return None  # out of time: released unsent
                stamp = int(time.time())
                headers = {"webhook-id": row.msg_id, "webhook-timestamp": str(stamp),
                           "webhook-signature": hooks.signature(row, row.msg_id, stamp,
                                                                row.body, utcnow())}
                return post(row.url, row.body, headers, timeout, allow, ca_file)

            results = list(pool.map(send, claimed))
            report.update(record(token, claimed, results, now or utcnow()))
            db.session.commit()
    return dict(report)


def release_stale(now: datetime) -> int:
    """Deliveries whose scheduler died while sending them: queued again."""
    limit = now - timedelta(seconds=current_app.config["WEBHOOK_CLAIM_TIMEOUT_SECONDS"])
    return db.session.execute(
        update(WebhookDelivery).where(WebhookDelivery.status == "sending",
                                      WebhookDelivery.claimed_at <= limit)
        .values(status="queued", claim=None, next_attempt_at=now)
        .execution_options(synchronize_session=False)).rowcount


def claim(now: datetime, size: int) -> tuple[str, list[Any]]:
    """Take up to ``size`` due deliveries of enabled endpoints (the caller commits), with
    what sending them needs."""
    token = secrets.token_hex(8)
    enabled = select(WebhookEndpoint.id).where(WebhookEndpoint.enabled)
    due = (select(WebhookDelivery.id)
           .where(WebhookDelivery.status == "queued", WebhookDelivery.next_attempt_at <= now,
                  WebhookDelivery.endpoint_id.in_(enabled))
           .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id).limit(size))
    if db.engine.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True, of=WebhookDelivery)
    ids = db.session.scalars(
        update(WebhookDelivery).where(WebhookDelivery.id.in_(due.scalar_subquery()))
        .values(status="sending", claim=token, claimed_at=now,
                attempts=WebhookDelivery.attempts + 1)
        .returning(WebhookDelivery.id).execution_options(synchronize_session=False)).all()
    if not ids:
        return token, []
    rows = db.session.execute(
        select(WebhookDelivery.id, WebhookDelivery.attempts, WebhookDelivery.endpoint_id,
               WebhookEvent.msg_id, WebhookEvent.body, WebhookEndpoint.url,
               WebhookEndpoint.secret, WebhookEndpoint.previous_secret,
               WebhookEndpoint.previous_secret_until)
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(WebhookDelivery.id.in_(ids)).order_by(WebhookDelivery.id)).all()
    return token, rows


_RECORD = (update(_D).where(_D.c.id == bindparam("d_id"), _D.c.claim == bindparam("d_claim"),
                            _D.c.status == "sending")
           .values(status=bindparam("d_status"), claim=None, claimed_at=None,
                   attempts=bindparam("d_attempts"), next_attempt_at=bindparam("d_next"),
                   last_status_code=bindparam("d_code"), last_error=bindparam("d_error"),
                   updated_at=bindparam("d_updated")))


def retry_at(failures: int, now: datetime) -> datetime | None:
    """When to try again after ``failures`` failed attempts (None: give up)."""
    if failures > len(SCHEDULE):
        return None
    wait = SCHEDULE[failures - 1] * (1 + random.uniform(0, JITTER))
    return now + timedelta(seconds=wait)


def record(token: str, claimed: list[Any], results: list[Result | None], now: datetime
           ) -> Counter[str]:
    """Write each attempt and each delivery's new state, and what they say about their
    endpoints (410: disabled; failing too long: disabled with an alert)."""
    counts: Counter[str] = Counter()
    updates, attempts = [], []
    succeeded, failing, gone = set(), set(), set()
    for row, result in zip(claimed, results, strict=True):
        values = {"d_id": row.id, "d_claim": token, "d_attempts": row.attempts,
                  "d_next": now, "d_code": None, "d_error": None, "d_updated": now}
        if result is None:  # not sent: no attempt spent
            values.update(d_status="queued", d_attempts=row.attempts - 1)
            updates.append(values)
            counts["released"] += 1
            continue
        attempts.append({"delivery_id": row.id, "started_at": result.started_at or now,
                         "duration_ms": result.duration_ms, "status_code": result.status_code,
                         "error": result.error, "response_head": result.head})
        values.update(d_code=result.status_code, d_error=result.error)
        if result.ok:
            values["d_status"] = "succeeded"
            succeeded.add(row.endpoint_id)
        elif result.status_code == 410:
            values["d_status"] = "failed"
            gone.add(row.endpoint_id)
        else:
            failing.add(row.endpoint_id)
            later = retry_at(row.attempts, now)
            values.update(d_status="queued" if later else "failed", d_next=later or now)
        counts[values["d_status"]] += 1
        updates.append(values)
    if attempts:
        db.session.execute(insert(WebhookAttempt), attempts)
    if updates:
        db.session.execute(_RECORD, updates)
    _endpoints_learnt(succeeded, failing - succeeded, gone, now)
    return counts


def _endpoints_learnt(succeeded: set[int], failing: set[int], gone: set[int],
                      now: datetime) -> None:
    if succeeded:
        db.session.execute(update(WebhookEndpoint).where(
            WebhookEndpoint.id.in_(succeeded), WebhookEndpoint.failing_since.is_not(None))
            .values(failing_since=None).execution_options(synchronize_session=False))
    if failing:
        db.session.execute(update(WebhookEndpoint).where(
            WebhookEndpoint.id.in_(failing), WebhookEndpoint.failing_since.is_(None))
            .values(failing_since=now).execution_options(synchronize_session=False))
    days = current_app.config["WEBHOOK_DISABLE_AFTER_DAYS"]
    too_long = set(db.session.scalars(select(WebhookEndpoint.id).where(
        WebhookEndpoint.id.in_(failing), WebhookEndpoint.enabled,
        WebhookEndpoint.failing_since <= now - timedelta(days=days)))) if failing else set()
    for endpoint_id, reason in [(i, "The endpoint answered 410 Gone.") for i in gone] + \
            [(i, f"Every delivery failed for {days} days.") for i in too_long]:
        db.session.execute(update(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id)
                           .values(enabled=False, disabled_reason=reason)
                           .execution_options(synchronize_session=False))
        raise_alert("webhook_endpoint_disabled", f"webhook-endpoint:{endpoint_id}", reason)
    if gone or too_long:
        hooks.forget()


def prune(now: datetime | None = None) -> int:
    """Drop events older than WEBHOOK_RETENTION_DAYS with nothing left to send."""
    limit = (now or utcnow()) - timedelta(days=current_app.config["WEBHOOK_RETENTION_DAYS"])
    busy = select(WebhookDelivery.event_id).where(
        WebhookDelivery.status.in_(("queued", "sending")))
    old = select(WebhookEvent.id).where(WebhookEvent.created_at < limit,
                                        WebhookEvent.id.not_in(busy))
    old_deliveries = select(WebhookDelivery.id).where(WebhookDelivery.event_id.in_(old))
    db.session.execute(delete(WebhookAttempt).where(
        WebhookAttempt.delivery_id.in_(old_deliveries)))
    db.session.execute(delete(WebhookDelivery).where(
        and_(WebhookDelivery.event_id.in_(old))))
    return db.session.execute(delete(WebhookEvent).where(WebhookEvent.id.in_(old))).rowcount
