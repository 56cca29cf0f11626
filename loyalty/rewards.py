"""The rewards catalogue: items bought with points. A claim spends the points and issues
a personal coupon for the reward's offer, in one transaction: a claim that fails (not
enough points, out of stock, limit reached) spends nothing."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, func, select, update

from crm.db import db
from crm.errors import Conflict, get_or_404
from crm.sql import Sql
from loyalty import accounts, coupons, ledger, settings
from loyalty.models import Coupon, Reward, RewardClaim
from loyalty.points import member


def create_reward(data: dict[str, Any]) -> Reward:
    coupons.get_offer(data["offer_id"])
    reward = Reward(**data)
    db.session.add(reward)
    db.session.flush()
    return reward


def list_rewards(scopes: list[str]) -> Select[tuple[Reward]]:
    """The catalogue: all of it for marketers, what can be claimed for tills and shop."""
    stmt = select(Reward).order_by(Reward.id)
    return stmt if {"marketing", "admin"} & set(scopes) else stmt.where(Reward.active)


def get_reward(reward_id: int) -> Reward:
    return get_or_404(Reward, reward_id, "reward")


def update_reward(reward_id: int, data: dict[str, Any]) -> Reward:
    reward = get_reward(reward_id)
    if "offer_id" in data:
        coupons.get_offer(data["offer_id"])
    for name, value in data.items():
        setattr(reward, name, value)
    db.session.flush()
    return reward


def claim(reward_id: int, customer_id: int, actor: str) -> dict[str, Any]:
    """Buy a reward with points: the member's account is locked, stock is taken with a
    conditional update, the points are spent through the ledger, a coupon is issued."""
    reward = get_reward(reward_id)
    customer_id = member(customer_id)
    if not reward.active:
        raise Conflict("This reward is not available.", reason="inactive")
    with Sql() as sql:  # the account is locked and read first: the checks use the session
        account = accounts.load(sql, customer_id, lots=True)
        if reward.per_customer_limit is not None:
            claimed = db.session.scalar(select(func.count()).select_from(RewardClaim).where(
                RewardClaim.reward_id == reward.id, RewardClaim.customer_id == customer_id))
            if claimed >= reward.per_customer_limit:
                raise Conflict(f"This member has claimed this reward {claimed} time(s), "
                               "the most allowed.", reason="customer_limit_reached")
        if reward.stock is not None:
            taken = db.session.execute(
                update(Reward.__table__).where(Reward.id == reward.id, Reward.stock > 0)
                .values(stock=Reward.stock - 1)).rowcount
            if not taken:
                raise Conflict("This reward is out of stock.", reason="out_of_stock")
        program = settings.program()
        if reward.points_cost > account.balance:
            raise ledger.InsufficientPoints(
                f"The reward costs {reward.points_cost} points; the member has "
                f"{max(account.balance, 0)}.", balance=account.balance)
        ledger.spend(account, program, reward.points_cost, kind="redeem", cause="reward",
                     actor=actor, reason=f"reward {reward.id}: {reward.name}")
        accounts.save(sql, account)
    offer = coupons.get_offer(reward.offer_id)
    _, codes = coupons.issue_codes(offer, 1, customer_id=customer_id)
    coupon = db.session.scalar(select(Coupon).where(Coupon.code == codes[0]))
    row = RewardClaim(reward_id=reward.id, customer_id=customer_id, coupon_id=coupon.id,
                      points=reward.points_cost)
    db.session.add(row)
    db.session.flush()
    return {"id": row.id, "reward_id": reward.id, "customer_id": customer_id,
            "points": reward.points_cost, "coupon_code": coupon.code,
            "offer_id": offer.id, "balance": account.balance}
