"""Loyalty's part of a customer merge: the source's purchases, lots, coupons, claims and
rule awards move to the survivor, and its balances move as ``transfer`` ledger rows on
both accounts. The ids moved are noted so that an unmerge moves them back, with the
points still left in the moved lots."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from crm.db import db
from loyalty import ledger, settings
from loyalty.models import (
    Coupon,
    CouponRedemption,
    Lot,
    Purchase,
    RewardClaim,
    RuleAward,
)

MOVED = {"purchases": Purchase, "lots": Lot, "coupons": Coupon,
         "coupon_redemptions": CouponRedemption, "reward_claims": RewardClaim,
         "rule_awards": RuleAward}


def _accounts(a: int, b: int) -> tuple[Any, Any]:
    first, second = sorted((a, b))
    locked = {first: ledger.lock_account(first, merged_ok=True),
              second: ledger.lock_account(second, merged_ok=True)}
    for account in locked.values():  # due releases and expiries first, on each side
        ledger.settle(account)
    return locked[a], locked[b]


def on_merged(_sender: Any, *, survivor_id: int, source_id: int, moved: dict[str, Any],
              **_: Any) -> None:
    survivor, source = _accounts(survivor_id, source_id)
    mine: dict[str, Any] = {}
    for name, model in MOVED.items():
        ids = list(db.session.scalars(select(model.id).where(model.customer_id == source_id)))
        if ids:
            db.session.execute(update(model.__table__).where(model.id.in_(ids))
                               .values(customer_id=survivor_id))
        mine[name] = ids
    db.session.expire_all()
    mine["lifetime"] = source.lifetime
    ledger.transfer(source, survivor, reason=f"merged into customer {survivor_id}")
    tiers = settings.tiers()
    ranks = {t.id: n for n, t in enumerate(tiers)}
    if ranks.get(source.tier_id, -1) > ranks.get(survivor.tier_id, -1):
        mine["survivor_tier"] = [survivor.tier_id, survivor.tier_since and
                                 survivor.tier_since.isoformat(), source.tier_id]
        survivor.tier_id, survivor.tier_since = source.tier_id, source.tier_since
    moved["loyalty"] = mine


def on_unmerged(_sender: Any, *, survivor_id: int, source_id: int, moved: dict[str, Any],
                **_: Any) -> None:
    mine = moved.get("loyalty")
    if not mine:
        return
    survivor, source = _accounts(survivor_id, source_id)
    for name, model in MOVED.items():
        if mine[name]:
            db.session.execute(update(model.__table__).where(
                model.id.in_(mine[name]), model.customer_id == survivor_id)
                .values(customer_id=source_id))
    db.session.expire_all()
    lots = db.session.scalars(select(Lot).where(Lot.id.in_(mine["lots"]),
                                                Lot.customer_id == source_id,
                                                Lot.remaining > 0)).all()
    points = sum(lot.remaining for lot in lots if lot.released)
    pending = sum(lot.remaining for lot in lots if not lot.released)
    ledger.transfer(survivor, source, points=points, pending=pending,
                    lifetime=min(mine["lifetime"], survivor.lifetime),
                    reason=f"unmerged from customer {survivor_id}")
    if mine.get("survivor_tier"):  # the tier it had before, unless it has moved since
        tier_id, since, given = mine["survivor_tier"]
        if survivor.tier_id == given:
            survivor.tier_id = tier_id
            survivor.tier_since = datetime.fromisoformat(since) if since else None
