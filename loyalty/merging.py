"""Loyalty's part of a customer merge: the source's purchases, lots, coupons, claims and
rule awards move to the survivor, and its balances move as ``transfer`` ledger rows on
both accounts. The ids moved are noted so that an unmerge moves them back, with the
points still left in the moved lots."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from crm.db import db
from crm.sql import Sql
from loyalty import accounts, ledger, settings
from loyalty.ledger import Account
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


def _settled(sql: Sql, a: int, b: int) -> None:
    """Lock both accounts (in the order of their ids) and settle each: due releases and
    expiries are written before any row moves."""
    locked = [accounts.load(sql, cid, lots=True, merged_ok=True) for cid in sorted((a, b))]
    for account in locked:
        ledger.settle(account)
    accounts.save(sql, *locked)
    sql.send()


def _loaded(sql: Sql, a: int, b: int) -> tuple[Account, Account]:
    """Both accounts as they are after the move, with their lots."""
    return (accounts.load(sql, a, lots=True, merged_ok=True),
            accounts.load(sql, b, lots=True, merged_ok=True))


def _move(ids: dict[str, list[int]] | None, from_id: int, to_id: int) -> dict[str, list[int]]:
    """Move the rows of each table in ``MOVED`` from one customer to the other: all of
    them, or those of ``ids``; return the ids moved."""
    moved: dict[str, list[int]] = {}
    for name, model in MOVED.items():
        if ids is None:
            rows = list(db.session.scalars(select(model.id).where(
                model.customer_id == from_id)))
        else:
            rows = ids[name]
        if rows:
            db.session.execute(update(model.__table__).where(
                model.id.in_(rows), model.customer_id == from_id).values(customer_id=to_id))
        moved[name] = rows
    db.session.expire_all()
    return moved


def on_merged(_sender: Any, *, survivor_id: int, source_id: int, moved: dict[str, Any],
              **_: Any) -> None:
    with Sql() as sql:
        _settled(sql, survivor_id, source_id)
        mine: dict[str, Any] = _move(None, source_id, survivor_id)
        survivor, source = _loaded(sql, survivor_id, source_id)
        mine["lifetime"] = source.lifetime
        ledger.transfer(source, survivor, reason=f"merged into customer {survivor_id}")
        ranks = {t.id: n for n, t in enumerate(settings.tiers())}
        if ranks.get(source.tier_id, -1) > ranks.get(survivor.tier_id, -1):
            mine["survivor_tier"] = [survivor.tier_id, survivor.tier_since and
                                     survivor.tier_since.isoformat(), source.tier_id]
            survivor.tier_id, survivor.tier_since = source.tier_id, source.tier_since
        accounts.save(sql, source, survivor)
    moved["loyalty"] = mine


def on_unmerged(_sender: Any, *, survivor_id: int, source_id: int, moved: dict[str, Any],
                **_: Any) -> None:
    mine = moved.get("loyalty")
    if not mine:
        return
    with Sql() as sql:
        _settled(sql, survivor_id, source_id)
        _move(mine, survivor_id, source_id)
        survivor, source = _loaded(sql, survivor_id, source_id)
        back = [lot for lot in source.lots if lot.id in set(mine["lots"])]
        ledger.transfer(survivor, source,
                        points=sum(lot.remaining for lot in back if lot.released),
                        pending=sum(lot.remaining for lot in back if not lot.released),
                        lifetime=min(mine["lifetime"], survivor.lifetime),
                        reason=f"unmerged from customer {survivor_id}")
        if mine.get("survivor_tier"):  # the tier it had before, unless it has moved since
            tier_id, since, given = mine["survivor_tier"]
            if survivor.tier_id == given:
                survivor.tier_id = tier_id
                survivor.tier_since = datetime.fromisoformat(since) if since else None
        accounts.save(sql, survivor, source)
