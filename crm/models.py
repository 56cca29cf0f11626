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
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm import pii
from crm.db import BigId, db, utcnow
from crm.identifiers import skeleton
from crm.sealed import NotInSql, Sealed

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
    expires_at: Mapped[datetime | None]
    allowed_ips: Mapped[list[str] | None] = mapped_column(JSON)  # CIDRs; None: anywhere
    # Written at most once a minute per key and node, never by the request itself.
    last_used_at: Mapped[datetime | None]
    last_used_address: Mapped[str | None] = mapped_column(String(45))
    networks: Mapped[list[str] | None] = mapped_column(JSON)  # /24 or /48 seen, newest last
    rotated_from_id: Mapped[int | None]  # the key this one replaced

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


def _birthday_clear(customer: Customer, value: date | None) -> None:
    """What of a birthday stays in the clear: year and month (segments on age and birthday
    month, the birthday campaign's first cut), and a fragment index (duplicate blocking)."""
    customer.birth_year = value.year if value else None
    customer.birth_month = value.month if value else None
    customer.birthday_index = pii.fragment_index("birthday", value.isoformat()) \
        if value else None


def birthday_columns(customer_id: int, value: date | None) -> dict[str, Any]:
    """The columns a birthday is stored in, for bulk writes of customers' rows."""
    return {"birthday_sealed": pii.seal("customers", "birthday_sealed", customer_id,
                                        value.isoformat() if value else None),
            "birth_year": value.year if value else None,
            "birth_month": value.month if value else None,
            "birthday_index": pii.fragment_index("birthday", value.isoformat())
            if value else None}


class Customer(db.Model):
    """Names and city stay in the clear (the ``q`` search by name, segments on city);
    the birthday is sealed, and every identifier is (CustomerIdentifier)."""

    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    first_name: Mapped[str | None] = mapped_column(String(100))
    last_name: Mapped[str | None] = mapped_column(String(100))
    birthday_sealed: Mapped[str | None] = mapped_column(Text)
    birth_year: Mapped[int | None] = mapped_column(SmallInteger)
    birth_month: Mapped[int | None] = mapped_column(SmallInteger)
    birthday_index: Mapped[str | None] = mapped_column(String(24), index=True)
    birthday = Sealed("birthday_sealed", dump=date.isoformat, load=date.fromisoformat,
                      on_set=_birthday_clear)
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


PERSONAL_KINDS = ("email", "phone", "card")


def identifier_lookup(kind: str, value: str) -> str:
    """What ``customer_identifiers.lookup`` holds for a normalised identifier: the blind
    index of an email, phone or card; a shop's or till's own id as it is."""
    return pii.blind_index(kind, value) if kind in PERSONAL_KINDS else value


def identifier_fragment(kind: str, value: str) -> str | None:
    """The blocking key of duplicate suggestions: a phone's last seven digits, an
    email's first five characters, as a short blind index."""
    if kind == "phone":
        return pii.fragment_index("phone_end", value[-7:])
    if kind == "email":
        return pii.fragment_index("email_start", value[:5])
    return None


def identifier_alike(kind: str, value: str) -> str | None:
    """The blocking key of look-alike emails: a short blind index of the email's
    skeleton (``crm.identifiers.skeleton``), which an address with a Cyrillic ``o`` (U+043E)
    shares with the Latin one it imitates. Never the skeleton itself: that would be the
    address in plain text."""
    return pii.fragment_index("email_skeleton", skeleton(value)) if kind == "email" else None


def identifier_row(row_id: int, customer_id: int, kind: str, value: str) -> dict[str, Any]:
    """A customer_identifiers row for bulk inserts (its id allocated first)."""
    return {"id": row_id, "customer_id": customer_id, "kind": kind,
            "lookup": identifier_lookup(kind, value),
            "sealed": pii.seal("customer_identifiers", "sealed", row_id, value)
            if kind in PERSONAL_KINDS else None,
            "fragment": identifier_fragment(kind, value),
            "alike": identifier_alike(kind, value)}


class _IdentifierValue(NotInSql):
    """``CustomerIdentifier.value``: an email, phone or card opened from ``sealed``; a
    shop or till id as ``lookup`` holds it. Setting it sets the blind indexes too."""

    name = "CustomerIdentifier.value"

    def __get__(self, obj: CustomerIdentifier | None, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return obj._secret if obj.kind in PERSONAL_KINDS else obj.lookup

    def __set__(self, obj: CustomerIdentifier, value: str) -> None:
        if obj.kind is None:
            raise TypeError("set an identifier's kind before its value")
        obj.lookup = identifier_lookup(obj.kind, value)
        obj.fragment = identifier_fragment(obj.kind, value)
        obj.alike = identifier_alike(obj.kind, value)
        if obj.kind in PERSONAL_KINDS:
            obj._secret = value


class CustomerIdentifier(db.Model):
    """A normalised identifier: the deterministic key that unifies a person across
    channels. Unique per kind, so one value always leads to one customer. An email, phone
    or card is kept sealed, found by its blind index (``lookup``); shop and till ids are
    no personal data and are their own lookup. Set ``kind`` before ``value``."""

    __tablename__ = "customer_identifiers"
    __table_args__ = (
        UniqueConstraint("kind", "lookup"),
        Index("ix_customer_identifiers_fragment", "kind", "fragment"),
        Index("ix_customer_identifiers_alike", "alike"),
        CheckConstraint(
            "kind IN ('email', 'phone', 'card', 'shop', 'pos')", name="kind"
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(8))
    lookup: Mapped[str] = mapped_column(String(320))
    sealed: Mapped[str | None] = mapped_column(Text)
    fragment: Mapped[str | None] = mapped_column(String(24))
    alike: Mapped[str | None] = mapped_column(String(24))  # identifier_alike
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    customer: Mapped[Customer] = relationship(back_populates="identifiers")

    _secret = Sealed("sealed")
    value = _IdentifierValue()


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


class AuditLog(db.Model):
    """One change, append-only and chained to the row before by SHA-256 (crm/audit.py).
    No personal values: ``fields`` names what changed, ``before``/``after`` hold only the
    non-personal values."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_object", "object_type", "object_id", "id"),
        Index("ix_audit_log_actor", "actor", "id"),
        Index("ix_audit_log_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(120))
    store_id: Mapped[int | None]
    address: Mapped[str | None] = mapped_column(String(45))
    request_id: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(40))
    object_type: Mapped[str] = mapped_column(String(40))
    object_id: Mapped[str] = mapped_column(String(64))
    fields: Mapped[list[str]] = mapped_column(JSON, default=list)
    before: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    after: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


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


class ServiceState(db.Model):
    """A named counter or heartbeat every worker and node reads (crm/service_state.py)."""

    __tablename__ = "service_state"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    counter: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                         default=0, server_default="0")
    at: Mapped[datetime | None]
    node: Mapped[str | None] = mapped_column(String(120))
