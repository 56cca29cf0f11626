"""Loyalty tables: the program's settings, tiers and earning rules; each member's account
(cached balances), point lots and the append-only ledger; purchases and returns."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
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
    text,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm.db import BigId, BigInt, DecimalText, db, utcnow

ROUNDING = ("floor", "round", "ceil")
CAP_PERIODS = ("day", "week", "month", "year", "ever")


class Program(db.Model):
    """The program's settings: one row (id 1)."""

    __tablename__ = "loyalty_program"

    id: Mapped[int] = mapped_column(primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    points_per_unit: Mapped[Decimal] = mapped_column(DecimalText, default=Decimal(1))
    point_value: Mapped[Decimal] = mapped_column(DecimalText, default=Decimal("0.01"))
    rounding: Mapped[str] = mapped_column(String(8), default="floor")
    pending_days: Mapped[int] = mapped_column(default=0)
    expiry_days: Mapped[int] = mapped_column(default=365)
    allow_negative: Mapped[bool] = mapped_column(default=False)
    tier_grace_days: Mapped[int] = mapped_column(default=30)
    # Points a till may spend without the member's one-time code (None: no code needed).
    verification_threshold: Mapped[int | None] = mapped_column(BigInt)
    # Returns taken at any store's till and by the shop (False: only where it was sold).
    returns_anywhere: Mapped[bool] = mapped_column(default=True, server_default=true())
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Tier(db.Model):
    __tablename__ = "loyalty_tiers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)
    threshold_points: Mapped[int | None] = mapped_column(BigInt)
    # minor units of the program currency
    threshold_spend: Mapped[int | None] = mapped_column(BigInt)
    window_days: Mapped[int] = mapped_column(default=365)
    multiplier: Mapped[Decimal] = mapped_column(DecimalText, default=Decimal(1))
    benefits: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EarningRule(db.Model):
    """A bonus: ``multiplier`` multiplies the base points of the lines it matches,
    ``fixed`` adds points once per matching purchase."""

    __tablename__ = "loyalty_earning_rules"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(10))
    value: Mapped[Decimal] = mapped_column(DecimalText)
    skus: Mapped[list[str]] = mapped_column(JSON, default=list)
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    store_codes: Mapped[list[str]] = mapped_column(JSON, default=list)
    weekdays: Mapped[list[int]] = mapped_column(JSON, default=list)  # 0 = Monday
    valid_from: Mapped[datetime | None]
    valid_to: Mapped[datetime | None]
    first_purchase: Mapped[bool] = mapped_column(default=False)
    birthday_month: Mapped[bool] = mapped_column(default=False)
    min_spend: Mapped[int | None] = mapped_column(BigInt)  # minor units
    cap_points: Mapped[int | None] = mapped_column(BigInt)
    cap_period: Mapped[str | None] = mapped_column(String(8))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Account(db.Model):
    """A member's balances, a cache of the ledger kept in the same transaction
    (``flask loyalty verify`` recomputes them). Locked for every change."""

    __tablename__ = "loyalty_accounts"

    customer_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("customers.id"), primary_key=True
    )
    balance: Mapped[int] = mapped_column(BigInt, default=0)
    pending: Mapped[int] = mapped_column(BigInt, default=0)
    lifetime: Mapped[int] = mapped_column(BigInt, default=0)
    tier_id: Mapped[int | None] = mapped_column(ForeignKey("loyalty_tiers.id"))
    tier_since: Mapped[datetime | None]
    downgrade_at: Mapped[datetime | None]  # set at a review that found a lower tier
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Lot(db.Model):
    """Points earned together: pending until ``pending_until``, then spendable until
    ``expires_at``. Spending and expiry draw down ``remaining``."""

    __tablename__ = "loyalty_lots"
    __table_args__ = (
        Index("ix_loyalty_lots_spendable", "customer_id", "expires_at", "id",
              sqlite_where=text("remaining > 0"), postgresql_where=text("remaining > 0")),
        Index("ix_loyalty_lots_to_release", "pending_until",
              sqlite_where=text("released = 0"), postgresql_where=text("NOT released")),
        Index("ix_loyalty_lots_to_expire", "expires_at",
              sqlite_where=text("remaining > 0"), postgresql_where=text("remaining > 0")),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("customers.id"))
    points: Mapped[int] = mapped_column(BigInt)
    remaining: Mapped[int] = mapped_column(BigInt)
    released: Mapped[bool]
    pending_until: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    purchase_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("purchases.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LedgerEntry(db.Model):
    """One change of points, never updated or deleted. ``points`` moves the spendable
    balance, ``pending`` the locked points."""

    __tablename__ = "loyalty_ledger"
    __table_args__ = (
        Index("ix_loyalty_ledger_customer", "customer_id", "id"),
        Index("ix_loyalty_ledger_customer_occurred", "customer_id", "occurred_at"),
        # The dashboard's points per day, read from the index alone.
        Index("ix_loyalty_ledger_occurred", "occurred_at", "kind", "points", "pending"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("customers.id"))
    # earn, pending, release, redeem, expire, reverse, restore, adjust, transfer
    kind: Mapped[str] = mapped_column(String(10))
    # purchase, return, coupon, admin, expiry, merge, reward
    cause: Mapped[str] = mapped_column(String(10))
    points: Mapped[int] = mapped_column(BigInt, default=0)
    pending: Mapped[int] = mapped_column(BigInt, default=0)
    balance_after: Mapped[int] = mapped_column(BigInt)
    purchase_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("purchases.id"),
                                                    index=True)
    return_id: Mapped[int | None] = mapped_column(BigInteger,
                                                  ForeignKey("purchase_returns.id"))
    lot_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("loyalty_lots.id"))
    reason: Mapped[str | None] = mapped_column(String(500))
    lot: Mapped[Lot | None] = relationship()
    actor: Mapped[str | None] = mapped_column(String(120))
    occurred_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LotDraw(db.Model):
    """How many points a spending ledger row took from which lot, so a return can put
    them back where they came from (with their own expiry)."""

    __tablename__ = "loyalty_lot_draws"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    entry_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("loyalty_ledger.id"),
                                          index=True)
    lot_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("loyalty_lots.id"))
    points: Mapped[int] = mapped_column(BigInt)

    entry: Mapped[LedgerEntry] = relationship()
    lot: Mapped[Lot] = relationship()


class RuleAward(db.Model):
    """Bonus points an earning rule gave: counted against the rule's cap."""

    __tablename__ = "loyalty_rule_awards"
    __table_args__ = (Index("ix_loyalty_rule_awards_cap", "rule_id", "customer_id",
                            "occurred_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("loyalty_earning_rules.id"))
    customer_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("customers.id"))
    purchase_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("purchases.id"))
    points: Mapped[int] = mapped_column(BigInt)
    occurred_at: Mapped[datetime]


class Purchase(db.Model):
    """A sale, unique per (store, receipt). Amounts are minor units: ``total`` before
    loyalty discounts (the lines plus ``tax`` plus ``adjustments``, the till's own
    markdowns being negative), ``discount`` from coupons and points, ``paid`` what the
    customer paid (tax included: points are earned on ``paid`` less the tax)."""

    __tablename__ = "purchases"
    __table_args__ = (
        UniqueConstraint("store_id", "receipt_id"),
        # A customer's purchases newest first (receipts, "my orders"), segments.
        Index("ix_purchases_customer_occurred", "customer_id", "occurred_at", "id"),
        # Segments (activity in a window) and the dashboard's sales per day, which reads
        # its figures from the index alone.
        Index("ix_purchases_occurred", "occurred_at", "currency", "paid", "returned_paid",
              "customer_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id"))
    receipt_id: Mapped[str] = mapped_column(String(64))
    request_hash: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("customers.id"))
    occurred_at: Mapped[datetime]
    currency: Mapped[str] = mapped_column(String(3))
    total: Mapped[int] = mapped_column(BigInt)
    tax: Mapped[int] = mapped_column(BigInt, default=0, server_default="0")
    adjustments: Mapped[int] = mapped_column(BigInt, default=0, server_default="0")
    discount: Mapped[int] = mapped_column(BigInt, default=0)
    paid: Mapped[int] = mapped_column(BigInt)
    points_earned: Mapped[int] = mapped_column(BigInt, default=0)
    points_pending: Mapped[int] = mapped_column(BigInt, default=0)
    points_redeemed: Mapped[int] = mapped_column(BigInt, default=0)
    coupons_applied: Mapped[list[Any]] = mapped_column(JSON, default=list)
    balance_after: Mapped[int | None] = mapped_column(BigInt)
    tier_after: Mapped[str | None] = mapped_column(String(50))
    returned_paid: Mapped[int] = mapped_column(BigInt, default=0)
    points_reversed: Mapped[int] = mapped_column(BigInt, default=0)
    points_restored: Mapped[int] = mapped_column(BigInt, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PurchaseLine(db.Model):
    __tablename__ = "purchase_lines"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    purchase_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("purchases.id"),
                                             index=True)
    sku: Mapped[str] = mapped_column(String(64), index=True)
    category: Mapped[str | None] = mapped_column(String(64), index=True)  # segments
    quantity: Mapped[int]
    unit_price: Mapped[int] = mapped_column(BigInt)
    amount: Mapped[int] = mapped_column(BigInt)
    earns: Mapped[bool] = mapped_column(default=True)
    returned_quantity: Mapped[int] = mapped_column(default=0)


RETURN_WAITING = "status IN ('held', 'expired')"  # returns whose sale has not arrived


class PurchaseReturn(db.Model):
    """A return of a sale of ``store_id``, taken back at ``taken_store_id`` (any store's
    till or the shop, with the program's ``returns_anywhere``) with key ``taken_key_id``;
    unique per (taking store, return_id), the till's own numbering. ``held`` until its
    purchase arrives when a till posted it first; ``expired`` when that has not happened
    within HELD_RETURN_DAYS (still applied if the sale comes later)."""

    __tablename__ = "purchase_returns"
    __table_args__ = (
        UniqueConstraint("taken_store_id", "return_id"),
        Index("ix_purchase_returns_held", "store_id", "receipt_id",
              sqlite_where=text(RETURN_WAITING), postgresql_where=text(RETURN_WAITING)),
        Index("ix_purchase_returns_status", "status", "created_at"),
        Index("ix_purchase_returns_expired", "expired_at",  # the expiries' counter
              sqlite_where=text("expired_at IS NOT NULL"),
              postgresql_where=text("expired_at IS NOT NULL")),
        CheckConstraint("status IN ('held', 'applied', 'expired')", name="status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id"))
    taken_store_id: Mapped[int] = mapped_column(ForeignKey("stores.id"))
    taken_key_id: Mapped[int | None]
    receipt_id: Mapped[str] = mapped_column(String(64))
    return_id: Mapped[str] = mapped_column(String(64))
    purchase_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("purchases.id"),
                                                    index=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(8))
    requested: Mapped[dict[str, Any]] = mapped_column(JSON)  # {"lines": ..., "amount": ...}
    returned_paid: Mapped[int] = mapped_column(BigInt, default=0)
    points_reversed: Mapped[int] = mapped_column(BigInt, default=0)
    points_restored: Mapped[int] = mapped_column(BigInt, default=0)
    points_uncollected: Mapped[int] = mapped_column(BigInt, default=0)
    balance_after: Mapped[int | None] = mapped_column(BigInt)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    applied_at: Mapped[datetime | None]
    expired_at: Mapped[datetime | None]
    note: Mapped[str | None] = mapped_column(Text)


OFFER_KINDS = ("percent", "amount", "free_item", "points_multiplier", "bonus_points")


class Offer(db.Model):
    """What a coupon gives. ``valid_from``/``valid_to`` are days in the store's time
    zone, both included. ``uses``/``spent`` count redemptions and discount given, kept
    by conditional updates so that limits and budget hold under concurrent tills."""

    __tablename__ = "offers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(20))
    value: Mapped[Decimal] = mapped_column(DecimalText)
    currency: Mapped[str] = mapped_column(String(3))
    min_spend: Mapped[int | None] = mapped_column(BigInt)
    skus: Mapped[list[str]] = mapped_column(JSON, default=list)
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    valid_from: Mapped[date | None]
    valid_to: Mapped[date | None]
    per_customer_limit: Mapped[int | None]
    total_limit: Mapped[int | None]
    budget: Mapped[int | None] = mapped_column(BigInt)
    stackable: Mapped[bool] = mapped_column(default=False)
    active: Mapped[bool] = mapped_column(default=True)
    uses: Mapped[int] = mapped_column(default=0)
    spent: Mapped[int] = mapped_column(BigInt, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Coupon(db.Model):
    """A code for an offer: one of a printed batch, or personal to one customer."""

    __tablename__ = "coupons"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    offer_id: Mapped[int] = mapped_column(ForeignKey("offers.id"), index=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    batch: Mapped[str | None] = mapped_column(String(32), index=True)
    customer_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("customers.id"),
                                                    index=True)
    max_uses: Mapped[int] = mapped_column(default=1)
    uses: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CouponRedemption(db.Model):
    """A coupon used in a purchase; ``reversed_at`` when a full return gave it back."""

    __tablename__ = "coupon_redemptions"
    __table_args__ = (Index("ix_coupon_redemptions_offer_customer", "offer_id",
                            "customer_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    coupon_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("coupons.id"), index=True)
    offer_id: Mapped[int] = mapped_column(ForeignKey("offers.id"))
    purchase_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("purchases.id"),
                                             index=True)
    customer_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("customers.id"))
    discount: Mapped[int] = mapped_column(BigInt, default=0)
    bonus_points: Mapped[int] = mapped_column(BigInt, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    reversed_at: Mapped[datetime | None]


class Reward(db.Model):
    """A catalogue item bought with points; a claim issues a coupon for ``offer_id``."""

    __tablename__ = "rewards"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    points_cost: Mapped[int] = mapped_column(BigInt)
    offer_id: Mapped[int] = mapped_column(ForeignKey("offers.id"))
    stock: Mapped[int | None]
    per_customer_limit: Mapped[int | None]
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RewardClaim(db.Model):
    __tablename__ = "reward_claims"
    __table_args__ = (Index("ix_reward_claims_reward_customer", "reward_id", "customer_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    reward_id: Mapped[int] = mapped_column(ForeignKey("rewards.id"))
    customer_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("customers.id"))
    coupon_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("coupons.id"))
    points: Mapped[int] = mapped_column(BigInt)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class VerificationCode(db.Model):
    """A one-time code sent to a member to confirm spending points (loyalty/verification.py):
    only its HMAC is kept."""

    __tablename__ = "verification_codes"
    __table_args__ = (Index("ix_verification_codes_customer", "customer_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("customers.id"))
    code_hash: Mapped[str] = mapped_column(String(64))
    api_key_id: Mapped[int | None]
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    used_for: Mapped[str | None] = mapped_column(String(120))  # the receipt or claim


class Product(db.Model):
    """The catalogue shared by the shops and the web store. Sales may name skus it does
    not know: lines keep their own sku and category."""

    __tablename__ = "products"

    sku: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(64), index=True)
    price: Mapped[int] = mapped_column(BigInt)  # minor units of ``currency``
    currency: Mapped[str] = mapped_column(String(3))
    active: Mapped[bool] = mapped_column(default=True)
    image_url: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class RelatedProduct(db.Model):
    """The recommendation model's item-to-item part, rebuilt by each refresh: for a sku,
    the skus its buyers also bought (``customers`` of them, within the window) and how
    many baskets held both; ``score`` weighs the first (see loyalty/recommendations.py).
    Only each sku's strongest neighbours are kept."""

    __tablename__ = "recommendation_related"

    sku: Mapped[str] = mapped_column(String(64), primary_key=True)
    other_sku: Mapped[str] = mapped_column(String(64), primary_key=True)
    score: Mapped[float]
    customers: Mapped[int] = mapped_column(BigInt)
    baskets: Mapped[int] = mapped_column(BigInt)


class PopularProduct(db.Model):
    """The popularity fallback, rebuilt by each refresh: the best sellers (by buyers
    within the window) per ``scope``: ``all``, ``channel:store``, ``channel:online``,
    ``store:<id>``."""

    __tablename__ = "recommendation_popular"

    scope: Mapped[str] = mapped_column(String(40), primary_key=True)
    rank: Mapped[int] = mapped_column(primary_key=True)
    sku: Mapped[str] = mapped_column(String(64))
    buyers: Mapped[int] = mapped_column(BigInt)
