"""Messaging, surveys and the scheduler's tables.

A message is a row of the outbox, written in the same transaction as the decision to
send it; the sender moves it through the states in ``campaigns.outbox``. Inbound SMS
are kept as they came. A survey invitation is created when a purchase is recorded and
becomes a message when it is due; an answer is unique per invitation (single use).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Table,
    Text,
    Unicode,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm import pii
from crm.db import BigId, BigInt, db, utcnow
from crm.sealed import Sealed

# "test": a campaign's message sent to a console user's own phone ("Send a test to me"):
# no customer, no consent to check, no quiet hours; never counted in a campaign's report.
PURPOSES = ("campaign", "survey", "transactional", "test")
# Our states, then Twilio's as its callbacks report them (ranked in campaigns.outbox).
MESSAGE_STATUSES = ("queued", "sending", "in_doubt", "skipped", "submitted", "sent",
                    "delivered", "undelivered", "failed", "read", "canceled")
SURVEY_KINDS = ("nps", "csat")
INVITATION_STATUSES = ("scheduled", "invited", "answered", "throttled", "no_consent",
                       "no_phone", "canceled")


def _one_of(column: str, values: tuple[str, ...]) -> CheckConstraint:
    listed = ", ".join(f"'{v}'" for v in values)
    return CheckConstraint(f"{column} IN ({listed})", name=column)


def number_index(number: str | None) -> str | None:
    """The blind index of a message's number (None when there is none)."""
    return pii.blind_index("sms", number) if number else None


def message_columns(message_id: int, number: str, body: str) -> dict[str, str | None]:
    """A message's number and text as its row stores them, for bulk inserts."""
    return {"to_sealed": pii.seal("messages", "to_sealed", message_id, number),
            "to_index": number_index(number),
            "body_sealed": pii.seal("messages", "body_sealed", message_id, body)}


class Message(db.Model):
    __tablename__ = "messages"
    __table_args__ = (
        _one_of("purpose", PURPOSES),
        _one_of("status", MESSAGE_STATUSES),
        Index("ix_messages_status_next_attempt", "status", "next_attempt_at", "id"),
        Index("ix_messages_customer_created", "customer_id", "created_at"),
        Index("ix_messages_purpose_id", "purpose", "id"),
        Index("ix_messages_to_index", "to_index"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("customers.id"))
    store_id: Mapped[int | None] = mapped_column(ForeignKey("stores.id"))
    campaign_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    # The number and the text are sealed (crm/pii.py); to_index is the number's blind
    # index (NULL: no number), for "messages to this number" and "has a number".
    to_sealed: Mapped[str | None] = mapped_column(Text)
    to_index: Mapped[str | None] = mapped_column(String(24))
    body_sealed: Mapped[str | None] = mapped_column(Text)
    to_number = Sealed("to_sealed", on_set=lambda m, v: setattr(m, "to_index", number_index(v)),
                       empty="")
    body = Sealed("body_sealed", empty="")
    purpose: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    provider_sid: Mapped[str | None] = mapped_column(String(64), unique=True)
    provider_status: Mapped[str | None] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claim: Mapped[str | None] = mapped_column(String(32))  # the sender's token while sending
    claimed_at: Mapped[datetime | None]
    # A campaign's own quiet hours (local "HH:MM" in quiet_zone), checked at send time.
    quiet_start: Mapped[str | None] = mapped_column(String(5))
    quiet_end: Mapped[str | None] = mapped_column(String(5))
    quiet_zone: Mapped[str | None] = mapped_column(String(64))
    error_code: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    submitted_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class MessageEvent(db.Model):
    """A delivery report about a message, as Twilio sent it: its status, our status it
    maps to, and whether it moved the message on (a late or unknown one does not)."""

    __tablename__ = "message_events"
    __table_args__ = (Index("ix_message_events_message", "message_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    message_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("messages.id"))
    provider_status: Mapped[str] = mapped_column(String(16))
    status: Mapped[str | None] = mapped_column(String(16))
    applied: Mapped[bool]
    error_code: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class InboundMessage(db.Model):
    """An SMS a customer sent us, with what we made of it and what we answered."""

    __tablename__ = "inbound_messages"
    __table_args__ = (Index("ix_inbound_messages_customer_created", "customer_id",
                            "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    provider_sid: Mapped[str] = mapped_column(String(64), unique=True)
    from_sealed: Mapped[str | None] = mapped_column(Text)
    customer_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("customers.id"))
    body_sealed: Mapped[str | None] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(16))  # opt_out, opt_in, help, survey, other
    reply: Mapped[str | None] = mapped_column(Text)  # ours (HELP, START...): not personal
    from_number = Sealed("from_sealed", empty="")
    body = Sealed("body_sealed", empty="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Survey(db.Model):
    __tablename__ = "surveys"
    __table_args__ = (_one_of("kind", SURVEY_KINDS),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(8))
    question: Mapped[str] = mapped_column(String(300))
    trigger: Mapped[str] = mapped_column(String(16), default="purchase")
    channel: Mapped[str] = mapped_column(String(8), default="sms")
    delay_hours: Mapped[int] = mapped_column(default=2)
    throttle_days: Mapped[int] = mapped_column(default=90)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SurveyInvitation(db.Model):
    __tablename__ = "survey_invitations"
    __table_args__ = (
        UniqueConstraint("survey_id", "purchase_id"),
        _one_of("status", INVITATION_STATUSES),
        Index("ix_survey_invitations_status_due", "status", "due_at"),
        Index("ix_survey_invitations_customer_invited", "customer_id", "invited_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    survey_id: Mapped[int] = mapped_column(ForeignKey("surveys.id"))
    customer_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("customers.id"))
    purchase_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("purchases.id"))
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id"))
    status: Mapped[str] = mapped_column(String(16), default="scheduled")
    due_at: Mapped[datetime]
    invited_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    message_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("messages.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    survey: Mapped[Survey] = relationship(lazy="joined", innerjoin=True)
    message: Mapped[Message | None] = relationship()


class SurveyResponse(db.Model):
    __tablename__ = "survey_responses"
    __table_args__ = (
        Index("ix_survey_responses_survey_created", "survey_id", "created_at"),
        Index("ix_survey_responses_survey_store_created", "survey_id", "store_id",
              "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    invitation_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("survey_invitations.id"), unique=True)
    survey_id: Mapped[int] = mapped_column(ForeignKey("surveys.id"))
    customer_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("customers.id"),
                                             index=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id"))
    score: Mapped[int]
    comment_sealed: Mapped[str | None] = mapped_column(Text)
    comment = Sealed("comment_sealed")
    channel: Mapped[str] = mapped_column(String(8))  # sms or web
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class JobStatus(db.Model):
    """The last run of each scheduled job: when, on which node, with what result."""

    __tablename__ = "job_status"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    node: Mapped[str] = mapped_column(String(100))
    runs: Mapped[int] = mapped_column(default=0)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    ok: Mapped[bool | None]
    result: Mapped[str | None] = mapped_column(String(300))


# APScheduler's SQLAlchemyJobStore table, declared here so that a migration creates it
# (the job store then finds it and leaves it as it is).
apscheduler_jobs = Table(
    "apscheduler_jobs", db.metadata,
    Column("id", Unicode(191), primary_key=True),
    Column("next_run_time", Float(25), index=True),
    Column("job_state", LargeBinary, nullable=False),
)


# -- segments and campaigns --------------------------------------------------------------

CAMPAIGN_STATUSES = ("draft", "active", "paused", "completed")
RECIPIENT_STATUSES = ("queued", "quiet", "holdout", "capped", "no_consent", "no_phone")


class Segment(db.Model):
    __tablename__ = "segments"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    rule: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class CustomerRfm(db.Model):
    """Recency, frequency and monetary quintiles (5 = best) over the last year, for
    customers who bought in it; refreshed by the refresh-insights job."""

    __tablename__ = "customer_rfm"

    customer_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("customers.id"),
                                             primary_key=True)
    last_purchase_at: Mapped[datetime]
    frequency: Mapped[int]
    monetary: Mapped[int] = mapped_column(BigInt)
    r: Mapped[int]
    f: Mapped[int]
    m: Mapped[int]
    computed_at: Mapped[datetime]


class CategoryAffinity(db.Model):
    """How many customers bought both categories in the last year (co-purchases), for
    recommendations; refreshed by the refresh-insights job."""

    __tablename__ = "category_affinity"

    category: Mapped[str] = mapped_column(String(64), primary_key=True)
    other: Mapped[str] = mapped_column(String(64), primary_key=True)
    customers: Mapped[int]


class Campaign(db.Model):
    __tablename__ = "campaigns"
    __table_args__ = (_one_of("status", CAMPAIGN_STATUSES),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    segment_id: Mapped[int] = mapped_column(ForeignKey("segments.id"))
    channel: Mapped[str] = mapped_column(String(8), default="sms")
    template: Mapped[str] = mapped_column(Text)
    offer_id: Mapped[int | None] = mapped_column(ForeignKey("offers.id"))
    schedule: Mapped[dict] = mapped_column(JSON)  # {"at"} | {"cron"} | {"trigger", "days"?}
    holdout_percent: Mapped[int] = mapped_column(default=0)
    quiet_hours: Mapped[dict | None] = mapped_column(JSON)
    frequency_cap: Mapped[dict | None] = mapped_column(JSON)  # {"count", "days"}
    reentry_days: Mapped[int] = mapped_column(default=30)
    attribution_days: Mapped[int] = mapped_column(default=14)
    status: Mapped[str] = mapped_column(String(16), default="draft")
    activated_at: Mapped[datetime | None]
    last_run_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class CampaignRecipient(db.Model):
    """Each person a campaign run picked, in the targeted or the holdout group, with
    what became of them (queued, or why not)."""

    __tablename__ = "campaign_recipients"
    __table_args__ = (
        _one_of("status", RECIPIENT_STATUSES),
        Index("ix_campaign_recipients_campaign_customer", "campaign_id", "customer_id",
              "created_at"),
        Index("ix_campaign_recipients_customer", "customer_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    customer_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("customers.id"))
    holdout: Mapped[bool]
    status: Mapped[str] = mapped_column(String(16))
    message_id: Mapped[int | None] = mapped_column(BigInteger)
    coupon_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CampaignEvent(db.Model):
    """Events campaign triggers wait for that no table keeps (a tier change)."""

    __tablename__ = "campaign_events"
    __table_args__ = (Index("ix_campaign_events_kind_created", "kind", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    customer_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("customers.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CampaignRecommendation(db.Model):
    """A product a run put in front of a person (``{recommended_product(s)}``), or, for
    the holdout, would have: the report counts purchases of them by group."""

    __tablename__ = "campaign_recommendations"
    __table_args__ = (Index("ix_campaign_recommendations_campaign", "campaign_id",
                            "customer_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    customer_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("customers.id"))
    holdout: Mapped[bool]
    sku: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
