"""A member's points as the till and the shop show them, and administrators' changes."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import Select, select

from crm.customers import find_customer, get_customer
from crm.db import db, utcnow
from crm.errors import NotFound
from crm.sql import Sql
from loyalty import accounts, ledger, settings, tiers
from loyalty.models import Account, LedgerEntry, Lot, Tier


def summary(customer_id: int) -> dict[str, Any]:
    """Balance, pending, lifetime, debt, tier and the next one, upcoming expiries."""
    get_customer(customer_id)
    account = db.session.get(Account, customer_id) or Account(
        customer_id=customer_id, balance=0, pending=0, lifetime=0)
    program, all_tiers, now = settings.program(), settings.tiers(), utcnow()
    standing = tiers.standings(all_tiers, program, now, customer_id)[customer_id]
    tier = next((t for t in all_tiers if t.id == account.tier_id), None)
    expiring: dict[str, int] = defaultdict(int)
    for expires, remaining in db.session.execute(
            select(Lot.expires_at, Lot.remaining)
            .where(Lot.customer_id == customer_id, Lot.remaining > 0, Lot.released,
                   Lot.expires_at > now)
            .order_by(Lot.expires_at)):
        expiring[expires.date().isoformat()] += remaining
    return {
        "customer_id": customer_id,
        "balance": account.balance,
        "pending": account.pending,
        "lifetime": account.lifetime,
        "debt": max(0, -account.balance),
        "tier": {"id": tier.id, "name": tier.name, "since": account.tier_since,
                 "downgrade_at": account.downgrade_at} if tier else None,
        "next_tier": tiers.next_tier(all_tiers, account.tier_id, standing, program.currency),
        "expiring": [{"points": p, "on": day} for day, p in list(expiring.items())[:12]],
    }


def member(customer_id: int) -> int:
    """The customer that points go to: the survivor, for a record merged into another."""
    customer = find_customer({"id": customer_id})
    if customer is None:
        raise NotFound(f"No customer has the id {customer_id}.")
    return customer.id


def ledger_rows(customer_id: int) -> Select[tuple[LedgerEntry]]:
    get_customer(customer_id)
    return (select(LedgerEntry).where(LedgerEntry.customer_id == customer_id)
            .order_by(LedgerEntry.id.desc()))


def adjust(customer_id: int, points: int, reason: str, actor: str) -> dict[str, Any]:
    customer_id = member(customer_id)
    with Sql() as sql:
        account = accounts.load(sql, customer_id, lots=points < 0)
        ledger.adjust(account, settings.program(), points, reason=reason, actor=actor)
        accounts.save(sql, account)
    return {"customer_id": customer_id, "points": points, "reason": reason,
            "balance": account.balance}


def profile_extension(ids: list[int]) -> dict[int, dict[str, Any]]:
    """Tier name and points balance for customer profiles, in one query."""
    rows = db.session.execute(
        select(Account.customer_id, Account.balance, Tier.name)
        .outerjoin(Tier, Tier.id == Account.tier_id)
        .where(Account.customer_id.in_(ids)))
    return {cid: {"points_balance": balance, "tier": tier} for cid, balance, tier in rows}
