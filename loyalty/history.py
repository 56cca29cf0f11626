"""Loyalty's part of a customer's timeline and of a GDPR export."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, String, cast, func, literal, select
from sqlalchemy.orm import aliased

from crm.db import db
from crm.models import Store
from crm.money import to_amount
from crm.timeline import row
from loyalty.models import (
    Account,
    Coupon,
    CouponRedemption,
    LedgerEntry,
    Purchase,
    PurchaseReturn,
)

_Taken = aliased(Store)


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
        # Where each return was taken back (any store's till, or the shop).
        select(*row(func.coalesce(PurchaseReturn.applied_at, PurchaseReturn.created_at),
                    "return", PurchaseReturn.id,
                    literal("return ") + PurchaseReturn.return_id + literal(" of receipt ")
                    + Purchase.receipt_id + literal(" taken back at ") + _Taken.code,
                    PurchaseReturn.returned_paid, Purchase.currency,
                    PurchaseReturn.points_restored - PurchaseReturn.points_reversed))
        .join(Purchase, Purchase.id == PurchaseReturn.purchase_id)
        .join(_Taken, _Taken.id == PurchaseReturn.taken_store_id)
        .where(Purchase.customer_id.in_(ids)),
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
    """The newest purchases of these records, each with its lines and returns (each
    with the code of the store that took it back): three queries in all."""
    from loyalty.models import PurchaseLine

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
        for ret, taken_at in db.session.execute(
                select(PurchaseReturn, _Taken.code)
                .join(_Taken, _Taken.id == PurchaseReturn.taken_store_id)
                .where(PurchaseReturn.purchase_id.in_(found)).order_by(PurchaseReturn.id)):
            returns[ret.purchase_id].append((ret, taken_at))
    return [{"purchase": p, "store": code, "timezone": zone, "lines": lines[p.id],
             "returns": returns[p.id]} for p, code, zone in rows]


def purchase_count(ids: list[int]) -> int:
    from sqlalchemy import func

    from crm.db import db

    return db.session.scalar(select(func.count()).select_from(Purchase)
                             .where(Purchase.customer_id.in_(ids))) or 0
