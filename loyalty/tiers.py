"""Tier qualification: on points *earned* (net of returns, not the spendable balance) or
on spend, each tier over its own rolling window. A member moves up at once; a member
who no longer qualifies keeps the tier until a review finds it so, and then still for
the program's grace days (``downgrade_at`` tells the member when)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import func, select

from crm import signals
from crm.db import db, utcnow
from crm.models import Customer
from crm.money import to_amount
from crm.sql import Sql
from loyalty import accounts, ledger
from loyalty.models import Account, LedgerEntry, Program, Purchase, Tier

QUALIFYING_KINDS = ("earn", "pending", "reverse")


@dataclass
class Standing:
    points: dict[int, int]  # window days -> points earned in that window
    spend: dict[int, int]  # window days -> spend (minor units, program currency)


def _points_since(since: datetime, customer_id: int | None = None) -> select:
    """Points earned since ``since`` per member, counting the history of customers
    merged into them (their ledger rows stay theirs)."""
    owner = func.coalesce(Customer.merged_into_id, Customer.id)
    stmt = (select(owner, func.sum(LedgerEntry.points + LedgerEntry.pending))
            .join(Customer, Customer.id == LedgerEntry.customer_id)
            .where(LedgerEntry.kind.in_(QUALIFYING_KINDS), LedgerEntry.occurred_at >= since)
            .group_by(owner))
    if customer_id is None:
        return stmt
    return stmt.where(LedgerEntry.customer_id.in_(select(Customer.id).where(
        (Customer.id == customer_id) | (Customer.merged_into_id == customer_id))))


def _spend_since(since: datetime, currency: str, customer_id: int | None = None) -> select:
    stmt = (select(Purchase.customer_id, func.sum(Purchase.paid - Purchase.returned_paid))
            .where(Purchase.customer_id.is_not(None), Purchase.occurred_at >= since,
                   Purchase.currency == currency)
            .group_by(Purchase.customer_id))
    return stmt if customer_id is None else stmt.where(Purchase.customer_id == customer_id)


def standings(tiers: list[Tier], program: Program, now: datetime,
              customer_id: int | None = None) -> dict[int, Standing]:
    """Points and spend per member over each window the tiers use: one query per
    window and basis, for one member or all."""
    result: dict[int, Standing] = defaultdict(lambda: Standing({}, {}))
    for days in {t.window_days for t in tiers if t.threshold_points is not None}:
        for cid, total in db.session.execute(
                _points_since(now - timedelta(days=days), customer_id)):
            result[cid].points[days] = total or 0
    for days in {t.window_days for t in tiers if t.threshold_spend is not None}:
        for cid, total in db.session.execute(
                _spend_since(now - timedelta(days=days), program.currency, customer_id)):
            result[cid].spend[days] = total or 0
    return result


def qualifies(tier: Tier, standing: Standing) -> bool:
    if tier.threshold_points is None and tier.threshold_spend is None:
        return True
    return bool(
        (tier.threshold_points is not None
         and standing.points.get(tier.window_days, 0) >= tier.threshold_points)
        or (tier.threshold_spend is not None
            and standing.spend.get(tier.window_days, 0) >= tier.threshold_spend))


def best_tier(tiers: list[Tier], standing: Standing) -> Tier | None:
    """The highest tier the standing reaches (``tiers`` run lowest to highest)."""
    reached = [t for t in tiers if qualifies(t, standing)]
    return reached[-1] if reached else None


def _rank(tiers: list[Tier], tier_id: int | None) -> int:
    ids = [t.id for t in tiers]
    return ids.index(tier_id) if tier_id in ids else -1


def _change(account: ledger.Account, tier: Tier | None, now: datetime) -> None:
    old = account.tier_id
    account.tier_id = tier.id if tier else None
    account.tier_since = now
    account.downgrade_at = None
    signals.tier_changed.send(current_app._get_current_object(),
                              customer_id=account.customer_id, old_tier_id=old,
                              new_tier_id=account.tier_id)


def upgrade_if_qualified(account: ledger.Account, tiers: list[Tier], program: Program,
                         now: datetime | None = None) -> None:
    """After points or spend went up: move the member up at once if they reach a
    higher tier (never down: that waits for the review)."""
    if not tiers:
        return
    now = now or utcnow()
    standing = standings(tiers, program, now, account.customer_id)[account.customer_id]
    best = best_tier(tiers, standing)
    if best is not None and _rank(tiers, best.id) > _rank(tiers, account.tier_id):
        _change(account, best, now)
    elif best is not None and best.id == account.tier_id and account.downgrade_at:
        account.downgrade_at = None


def review(program: Program, tiers: list[Tier], now: datetime | None = None,
           batch: int = 2000) -> dict[str, int]:
    """The periodic review of every member's tier: upgrades, scheduled downgrades
    (after the grace days), and downgrades that are due. Safe to run twice. The
    accounts are locked and saved through the account store, a batch at a time."""
    now = now or utcnow()
    all_standings = standings(tiers, program, now)
    counts = {"upgraded": 0, "downgraded": 0, "downgrade_scheduled": 0, "kept": 0}
    grace = timedelta(days=program.tier_grace_days)
    members = sorted(set(db.session.scalars(select(Account.customer_id).where(
        Account.tier_id.is_not(None)))) | set(all_standings))
    for start in range(0, len(members), batch):
        with Sql() as sql:
            locked = accounts.load_many(sql, members[start:start + batch])
            for account in locked.values():
                counts[_review_one(account, tiers, all_standings, grace, now)] += 1
            accounts.save(sql, *locked.values())
    return counts


def _review_one(account: ledger.Account, tiers: list[Tier], all_standings: dict[int, Standing],
                grace: timedelta, now: datetime) -> str:
    best = best_tier(tiers, all_standings.get(account.customer_id, Standing({}, {})))
    have, reach = _rank(tiers, account.tier_id), _rank(tiers, best.id if best else None)
    if reach > have:
        _change(account, best, now)
        return "upgraded"
    if reach == have:
        account.downgrade_at = None
        return "kept"
    if account.downgrade_at is None and grace:
        account.downgrade_at = now + grace
        return "downgrade_scheduled"
    if account.downgrade_at is None or account.downgrade_at <= now:
        _change(account, best, now)
        return "downgraded"
    return "kept"


def next_tier(tiers: list[Tier], tier_id: int | None, standing: Standing,
              currency: str) -> dict[str, object] | None:
    """The tier above the member's, and what is missing to reach it."""
    rank = _rank(tiers, tier_id)
    if rank + 1 >= len(tiers):
        return None
    tier = tiers[rank + 1]
    answer: dict[str, object] = {"id": tier.id, "name": tier.name}
    if tier.threshold_points is not None:
        answer["points_needed"] = max(
            0, tier.threshold_points - standing.points.get(tier.window_days, 0))
    if tier.threshold_spend is not None:
        answer["spend_needed"] = to_amount(max(
            0, tier.threshold_spend - standing.spend.get(tier.window_days, 0)), currency)
    return answer
