"""Outgoing webhooks' tables (Standard Webhooks): endpoints, events, one delivery per
event and endpoint (the outbox of webhooks), each attempt of a delivery, and the
per-customer sequence counter.

An event and its deliveries are written in the same transaction as the change they
report, and only when some enabled endpoint subscribes (``campaigns.hooks``); the
delivery job (``campaigns.hook_delivery``) moves a delivery along
``queued --claim--> sending --2xx--> succeeded`` or back to ``queued`` for a retry, or to
``failed`` when the schedule is spent or the endpoint answers 410.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm.db import BigId, BigInt, db, utcnow

DELIVERY_STATUSES = ("queued", "sending", "succeeded", "failed")


class WebhookEndpoint(db.Model):
    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str | None] = mapped_column(String(500))
    event_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    enabled: Mapped[bool] = mapped_column(default=True)
    secret: Mapped[str] = mapped_column(String(100))
    # After a rotation the old secret signs too until previous_secret_until.
    previous_secret: Mapped[str | None] = mapped_column(String(100))
    previous_secret_until: Mapped[datetime | None]
    disabled_reason: Mapped[str | None] = mapped_column(String(300))
    failing_since: Mapped[datetime | None]  # the first failure since the last success
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class WebhookEvent(db.Model):
    """What happened, as the body every delivery of it sends (the same bytes each time)."""

    __tablename__ = "webhook_events"
    __table_args__ = (Index("ix_webhook_events_created", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    msg_id: Mapped[str] = mapped_column(String(40), unique=True)  # the webhook-id header
    type: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[int | None] = mapped_column(BigInteger)
    sequence: Mapped[int | None] = mapped_column(BigInt)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(db.Model):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint("status IN ('queued', 'sending', 'succeeded', 'failed')",
                        name="status"),
        Index("ix_webhook_deliveries_status_next", "status", "next_attempt_at", "id"),
        Index("ix_webhook_deliveries_endpoint", "endpoint_id", "id"),
        Index("ix_webhook_deliveries_event", "event_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("webhook_events.id",
                                                                 ondelete="CASCADE"))
    endpoint_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("webhook_endpoints.id",
                                                                    ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(default=0)  # in the current round (resend: 0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claim: Mapped[str | None] = mapped_column(String(32))
    claimed_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    event: Mapped[WebhookEvent] = relationship(viewonly=True)
    history: Mapped[list[WebhookAttempt]] = relationship(
        viewonly=True, order_by="WebhookAttempt.id")


class WebhookAttempt(db.Model):
    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_delivery", "delivery_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("webhook_deliveries.id",
                                                                    ondelete="CASCADE"))
    started_at: Mapped[datetime]
    duration_ms: Mapped[int]
    status_code: Mapped[int | None]  # None: no answer (timeout, refused, SSRF check)
    error: Mapped[str | None] = mapped_column(String(300))
    response_head: Mapped[str | None] = mapped_column(String(500))


class WebhookSequence(db.Model):
    """The last ``sequence`` given to a customer's events (one row per customer)."""

    __tablename__ = "webhook_sequences"

    customer_id: Mapped[int] = mapped_column(BigInteger, primary_key=True,
                                             autoincrement=False)
    last: Mapped[int] = mapped_column(BigInt)
