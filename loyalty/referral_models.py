"""The referral program's tables: its settings (one row), each member's personal code,
and one referral per friend (a friend is referred once: ``friend_id`` is unique)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from crm.db import BigId, BigInt, db, utcnow

STATUSES = ("attributed", "qualified", "rewarded", "rejected", "reversed", "capped")


class ReferralProgram(db.Model):
    __tablename__ = "referral_program"

    id: Mapped[int] = mapped_column(primary_key=True)
    enabled: Mapped[bool] = mapped_column(default=False)
    referrer_points: Mapped[int] = mapped_column(BigInt, default=0)
    friend_points: Mapped[int] = mapped_column(BigInt, default=0)
    friend_offer_id: Mapped[int | None] = mapped_column(BigInteger)  # a coupon at sign-up
    min_first_purchase: Mapped[int] = mapped_column(BigInt, default=0)  # minor units
    qualify_days: Mapped[int] = mapped_column(default=30)
    max_per_referrer_per_month: Mapped[int | None]
    max_per_referrer: Mapped[int | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ReferralCode(db.Model):
    __tablename__ = "referral_codes"

    customer_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("customers.id"),
                                             primary_key=True, autoincrement=False)
    code: Mapped[str] = mapped_column(String(8), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Referral(db.Model):
    __tablename__ = "referrals"
    __table_args__ = (
        CheckConstraint("status IN ('attributed', 'qualified', 'rewarded', 'rejected', "
                        "'reversed', 'capped')", name="status"),
        Index("ix_referrals_referrer_status", "referrer_id", "status"),
        Index("ix_referrals_status_due", "status", "reward_due_at"),
        Index("ix_referrals_purchase", "purchase_id"),
        Index("ix_referrals_fingerprint", "fingerprint"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    referrer_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("customers.id"))
    friend_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("customers.id"),
                                           unique=True)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(32))
    # A keyed hash of the friend's mailbox (normalised), to see many friends from one.
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    purchase_id: Mapped[int | None] = mapped_column(BigInteger)  # the qualifying sale
    qualified_at: Mapped[datetime | None]
    reward_due_at: Mapped[datetime | None]
    rewarded_at: Mapped[datetime | None]
    reversed_at: Mapped[datetime | None]
    referrer_points: Mapped[int] = mapped_column(BigInt, default=0)  # given (when rewarded)
    friend_points: Mapped[int] = mapped_column(BigInt, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
