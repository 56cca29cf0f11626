"""Loyalty's part of a customer's timeline and of a GDPR export."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, String, cast, literal, select

from crm.db import db
from crm.money import to_amount
from crm.timeline import row
from loyalty.models import Account, Coupon, CouponRedemption, LedgerEntry, Purchase


def timeline_sources(ids: list[int]) -> list[Select[Any]]:
    return [
        select(*row(Purchase.occurred_at, "purchase", Purchase.id,
                    literal("receipt ") + Purchase.receipt_id, Purchase.total,
                    Purchase.currency, Purchase.points_earned))
        .where(Purchase.customer_id.in_(ids)),
        select(*row(LedgerEntry.created_at, "points", LedgerEntry.id,
                    LedgerEntry.kind + literal(" (") + LedgerEntry.cause + literal(")"),
                    points=LedgerEntry.points + LedgerEntry.pending))
        .where(LedgerEntry.customer_id.in_(ids)),
        select(*row(CouponRedemption.created_at, "coupon", CouponRedemption.id,
                    literal("coupon used on purchase ")
                    + cast(CouponRedemption.purchase_id, String),
                    CouponRedemption.discount, Purchase.currency))
        .join(Purchase, Purchase.id == CouponRedemption.purchase_id)
        .where(CouponRedemption.customer_id.in_(ids)),
    ]


def export_section(ids: list[int]) -> dict[str, Any]:

    accounts = db.session.scalars(select(Account).where(Account.customer_id.in_(ids)))
    purchases = db.session.scalars(select(Purchase).where(Purchase.customer_id.in_(ids))
                                   .order_by(Purchase.occurred_at))
    ledger = db.session.scalars(select(LedgerEntry).where(LedgerEntry.customer_id.in_(ids))
                                .order_by(LedgerEntry.id))
    coupons = db.session.scalars(select(Coupon).where(Coupon.customer_id.in_(ids)))
    return {"loyalty": {
        "accounts": [{"customer_id": a.customer_id, "balance": a.balance,
                      "pending": a.pending, "lifetime": a.lifetime} for a in accounts],
        "purchases": [{"id": p.id, "receipt_id": p.receipt_id, "occurred_at": p.occurred_at,
                       "total": to_amount(p.total, p.currency), "currency": p.currency,
                       "points_earned": p.points_earned} for p in purchases],
        "points_ledger": [{"kind": e.kind, "cause": e.cause, "points": e.points,
                           "pending": e.pending, "occurred_at": e.occurred_at,
                           "reason": e.reason} for e in ledger],
        "coupons": [{"code": c.code, "offer_id": c.offer_id, "uses": c.uses}
                    for c in coupons],
    }}


def purchases_of(ids: list[int], limit: int = 50) -> list[dict[str, Any]]:
    """The newest purchases of these records, each with its lines and returns (three
    queries in all)."""
    from crm.db import db
    from crm.models import Store
    from loyalty.models import PurchaseLine, PurchaseReturn

    rows = db.session.execute(
        select(Purchase, Store.code, Store.timezone).join(Store, Store.id == Purchase.store_id)
        .where(Purchase.customer_id.in_(ids))
        .order_by(Purchase.occurred_at.desc(), Purchase.id.desc()).limit(limit)).all()
    found = [p.id for p, _, _ in rows]
    lines: dict[int, list[Any]] = {i: [] for i in found}
    returns: dict[int, list[Any]] = {i: [] for i in found}
    if found:
        for line in db.session.scalars(select(PurchaseLine).where(
                PurchaseLine.purchase_id.in_(found)).order_by(PurchaseLine.id)):
            lines[line.purchase_id].append(line)
        for ret in db.session.scalars(select(PurchaseReturn).where(
                PurchaseReturn.purchase_id.in_(found)).order_by(PurchaseReturn.id)):
            returns[ret.purchase_id].append(ret)
    return [{"purchase": p, "store": code, "timezone": zone, "lines": lines[p.id],
             "returns": returns[p.id]} for p, code, zone in rows]


def purchase_count(ids: list[int]) -> int:
    from sqlalchemy import func

    from crm.db import db

    return db.session.scalar(select(func.count()).select_from(Purchase)
                             .where(Purchase.customer_id.in_(ids))) or 0
