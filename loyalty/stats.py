"""The program's figures for the marketers' dashboard, aggregated in SQL: one query
each, grouped by day where they are series."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import case, func, select

from crm.db import db
from crm.money import exponent
from crm.stats import day_of
from loyalty import settings
from loyalty.models import Account, CouponRedemption, LedgerEntry, Purchase


def _days(since: date, until: date) -> list[str]:
    return [(since + timedelta(days=n)).isoformat() for n in range((until - since).days + 1)]


def sales_per_day(since: datetime, until: datetime) -> list[dict[str, Any]]:
    """Purchases, paid and returned (minor units of the program currency) per UTC day."""
    currency = settings.program().currency
    day = day_of(Purchase.occurred_at)
    rows = {d: (n, paid, returned) for d, n, paid, returned in db.session.execute(
        select(day, func.count(), func.sum(Purchase.paid), func.sum(Purchase.returned_paid))
        .where(Purchase.occurred_at >= since, Purchase.occurred_at < until,
               Purchase.currency == currency)
        .group_by(day))}
    return [{"day": d, "purchases": rows.get(d, (0, 0, 0))[0],
             "paid": int(rows.get(d, (0, 0, 0))[1] or 0),
             "returned": int(rows.get(d, (0, 0, 0))[2] or 0), "currency": currency}
            for d in _days(since.date(), (until - timedelta(microseconds=1)).date())]


def points_per_day(since: datetime, until: datetime) -> list[dict[str, Any]]:
    """Points issued (earned, pending included) and redeemed per UTC day."""
    day = day_of(LedgerEntry.occurred_at)
    totals: dict[str, list[int]] = {}
    for d, kind, points, pending in db.session.execute(
            select(day, LedgerEntry.kind, func.sum(LedgerEntry.points),
                   func.sum(LedgerEntry.pending))
            .where(LedgerEntry.occurred_at >= since, LedgerEntry.occurred_at < until,
                   LedgerEntry.kind.in_(("earn", "pending", "redeem")))
            .group_by(day, LedgerEntry.kind)):
        issued_redeemed = totals.setdefault(d, [0, 0])
        if kind == "redeem":
            issued_redeemed[1] -= int(points or 0)
        else:
            issued_redeemed[0] += int(points or 0) + int(pending or 0)
    return [{"day": d, "issued": totals.get(d, [0, 0])[0], "redeemed": totals.get(d, [0, 0])[1]}
            for d in _days(since.date(), (until - timedelta(microseconds=1)).date())]


def active_members(since: datetime) -> int:
    """Members who bought something since then."""
    return db.session.scalar(select(func.count(func.distinct(Purchase.customer_id)))
                             .where(Purchase.occurred_at >= since,
                                    Purchase.customer_id.is_not(None))) or 0


def tier_distribution() -> list[dict[str, Any]]:
    """Members with an account per tier, lowest tier first; no tier last."""
    counts = dict(db.session.execute(select(Account.tier_id, func.count())
                                     .group_by(Account.tier_id)).all())
    out = [{"tier": t.name, "members": counts.get(t.id, 0)} for t in settings.tiers()]
    if counts.get(None):
        out.append({"tier": "No tier", "members": counts[None]})
    return out


def liability() -> dict[str, Any]:
    """Outstanding points (spendable and pending) and what they are worth."""
    program = settings.program()
    spendable, pending = db.session.execute(select(
        func.coalesce(func.sum(case((Account.balance > 0, Account.balance), else_=0)), 0),
        func.coalesce(func.sum(Account.pending), 0))).one()
    points = int(spendable) + int(pending)
    value = (Decimal(points) * program.point_value).scaleb(exponent(program.currency))
    return {"points": points, "spendable": int(spendable), "pending": int(pending),
            "value": int(value.to_integral_value(ROUND_HALF_UP)),
            "currency": program.currency, "point_value": program.point_value}


def coupons_redeemed(since: datetime) -> int:
    return db.session.scalar(select(func.count()).select_from(CouponRedemption)
                             .where(CouponRedemption.created_at >= since,
                                    CouponRedemption.reversed_at.is_(None))) or 0

