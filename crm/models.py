"""Platform and customer tables: stores, API keys, customers and their identifiers."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm.db import BigId, db, utcnow

CHANNELS = ("store", "online")
SCOPES = ("pos", "shop", "marketing", "admin")


class Store(db.Model):
    __tablename__ = "stores"
    __table_args__ = (CheckConstraint("channel IN ('store', 'online')", name="channel"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16))
    currency: Mapped[str] = mapped_column(String(3))
    phone: Mapped[str | None] = mapped_column(String(20))  # never matches a customer
    # Local "HH:MM" times between which only transactional SMS go out (may wrap midnight).
    quiet_start: Mapped[str | None] = mapped_column(String(5))
    quiet_end: Mapped[str | None] = mapped_column(String(5))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def quiet_hours(self) -> dict[str, str] | None:
        if self.quiet_start and self.quiet_end:
            return {"start": self.quiet_start, "end": self.quiet_end}
        return None


class ApiKey(db.Model):
    """A client's credential. Only a SHA-256 of the key is kept: the keys are 256-bit
    random strings, so a slow password hash would add latency to every request and no
    safety. ``prefix`` is the public part of the key, used to find the row."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[str] = mapped_column(String(64))  # space-separated, from SCOPES
    store_id: Mapped[int | None] = mapped_column(ForeignKey("stores.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]

    store: Mapped[Store | None] = relationship(lazy="joined")

    @property
    def scope_list(self) -> list[str]:
        return self.scopes.split()

    @property
    def store_code(self) -> str | None:
        return self.store.code if self.store else None


class IdempotencyKey(db.Model):
    """A write made with an ``Idempotency-Key`` header, and the answer it got: the same
    key and request again gets the same answer; the same key with another request, 409."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("api_key_id", "key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"))
    key: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None]
    response_body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Customer(db.Model):
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    first_name: Mapped[str | None] = mapped_column(String(100))
    last_name: Mapped[str | None] = mapped_column(String(100))
    birthday: Mapped[date | None]
    city: Mapped[str | None] = mapped_column(String(100))
    consent_sms: Mapped[bool] = mapped_column(default=False)
    consent_email: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # The shop's updated_at of the last sync applied: an older one never overwrites.
    source_updated_at: Mapped[datetime | None]
    merged_into_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("customers.id"), index=True)
    erased_at: Mapped[datetime | None]

    identifiers: Mapped[list[CustomerIdentifier]] = relationship(
        back_populates="customer",
        cascade="all, delete-orphan",
        order_by="CustomerIdentifier.id",
    )

    def identifier(self, kind: str) -> str | None:
        """The newest identifier of a kind (a customer may hold several after a merge)."""
        values = [i.value for i in self.identifiers if i.kind == kind]
        return values[-1] if values else None

    @property
    def email(self) -> str | None:
        return self.identifier("email")

    @property
    def phone(self) -> str | None:
        return self.identifier("phone")

    @property
    def card_number(self) -> str | None:
        return self.identifier("card")

    @property
    def consent(self) -> dict[str, bool]:
        return {"sms": self.consent_sms, "email": self.consent_email}


# Name search at the till and duplicate blocking: served by expression indexes.
Index("ix_customers_last_name_lower", func.lower(Customer.last_name))
Index("ix_customers_first_name_lower", func.lower(Customer.first_name))
Index("ix_customers_birthday", Customer.birthday)


class CustomerIdentifier(db.Model):
    """A normalised identifier: the deterministic key that unifies a person across
    channels. Unique per kind, so one value always leads to one customer."""

    __tablename__ = "customer_identifiers"
    __table_args__ = (
        UniqueConstraint("kind", "value"),
        CheckConstraint(
            "kind IN ('email', 'phone', 'card', 'shop', 'pos')", name="kind"
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(8))
    value: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    customer: Mapped[Customer] = relationship(back_populates="identifiers")


# Blocking keys for duplicate suggestions: the end of a phone number, the start of an email.
Index("ix_customer_identifiers_phone_end",
      func.substr(CustomerIdentifier.value, func.length(CustomerIdentifier.value) - 6),
      sqlite_where=text("kind = 'phone'"), postgresql_where=text("kind = 'phone'"))
Index("ix_customer_identifiers_email_start", func.substr(CustomerIdentifier.value, 1, 5),
      sqlite_where=text("kind = 'email'"), postgresql_where=text("kind = 'email'"))


class ConsentEvent(db.Model):
    """A customer's choice for a channel, as it was given: the customer's current
    consent is the newest event per channel."""

    __tablename__ = "consent_events"
    __table_args__ = (Index("ix_consent_events_customer", "customer_id", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("customers.id"))
    channel: Mapped[str] = mapped_column(String(8))
    granted: Mapped[bool]
    source: Mapped[str] = mapped_column(String(40))
    store_id: Mapped[int | None] = mapped_column(ForeignKey("stores.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CustomerMerge(db.Model):
    """A merge, with what it needs to be undone: both profiles as they were, and the ids
    of every row each package moved to the survivor."""

    __tablename__ = "customer_merges"
    __table_args__ = (Index("ix_customer_merges_pair", "survivor_id", "source_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    survivor_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("customers.id"))
    source_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("customers.id"))
    actor: Mapped[str | None] = mapped_column(String(120))
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSON)
    moved: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    undone_at: Mapped[datetime | None]


class DuplicateSuggestion(db.Model):
    """A likely duplicate found by the nightly job, for a marketer to review."""

    __tablename__ = "duplicate_suggestions"
    __table_args__ = (UniqueConstraint("customer_id", "other_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("customers.id"))
    other_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("customers.id"))
    score: Mapped[int]
    reasons: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEvent(db.Model):
    """Who did what to a customer's personal data (exports, erasures)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("customers.id"),
                                             index=True)
    action: Mapped[str] = mapped_column(String(20))
    actor: Mapped[str | None] = mapped_column(String(120))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SecurityAlert(db.Model):
    """A fraud or intrusion signal for an administrator to look at. While one is open,
    the same rule tripping again for the same subject counts on it instead of opening
    another (``open_key`` is ``rule|subject`` while open, NULL once resolved)."""

    __tablename__ = "security_alerts"
    __table_args__ = (
        CheckConstraint("status IN ('open', 'resolved')", name="status"),
        Index("ix_security_alerts_status", "status", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    rule: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(200))  # "key:12", "address:…": never personal
    detail: Mapped[str] = mapped_column(String(1000))
    status: Mapped[str] = mapped_column(String(16), default="open")
    count: Mapped[int] = mapped_column(default=1)
    open_key: Mapped[str | None] = mapped_column(String(270), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None]
    resolved_by: Mapped[str | None] = mapped_column(String(120))
    resolution: Mapped[str | None] = mapped_column(String(1000))
