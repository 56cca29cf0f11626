"""The program's settings, tiers and earning rules, as marketers configure them."""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from flask import current_app
from sqlalchemy import Select, select

from crm.db import db
from crm.errors import Conflict, Invalid, get_or_404
from crm.money import amounts_to_minor
from loyalty.models import Account, EarningRule, Program, Tier


@dataclass(frozen=True)
class Snapshot:
    """Plain copies of the program, its tiers (lowest first) and active earning rules,
    for the purchase path. They change rarely and are read by every sale."""

    program: Any
    tiers: list[Any]
    rules: list[Any]
    taken_at: float


_snapshot: Snapshot | None = None


def _plain(row: Any) -> SimpleNamespace:
    return SimpleNamespace(**{c.key: getattr(row, c.key) for c in row.__table__.columns})


def snapshot() -> Snapshot:
    """The settings as of at most SETTINGS_CACHE_SECONDS ago (changes made through this
    process show at once; other nodes see them within that time)."""
    global _snapshot
    ttl = current_app.config["SETTINGS_CACHE_SECONDS"]
    if _snapshot is None or time.monotonic() - _snapshot.taken_at >= ttl:
        _snapshot = Snapshot(
            _plain(program()), [_plain(t) for t in tiers()],
            [_plain(r) for r in db.session.scalars(
                select(EarningRule).where(EarningRule.active).order_by(EarningRule.id))],
            time.monotonic())
    return _snapshot


def forget() -> None:
    """Settings changed: the next sale reads them afresh."""
    global _snapshot
    _snapshot = None


def program() -> Program:
    """The program row, made with defaults on first use."""
    row = db.session.get(Program, 1)
    if row is None:
        row = Program(id=1)
        db.session.add(row)
        db.session.flush()
    return row


def update_program(data: dict[str, Any]) -> Program:
    forget()
    row = program()
    for field, value in data.items():
        setattr(row, field, value)
    db.session.flush()
    return row


def _program_money(data: dict[str, Any], *names: str) -> dict[str, Any]:
    """Amounts given in the program's currency, to minor units."""
    return amounts_to_minor(data, program().currency, *names)


def tiers() -> list[Tier]:
    """Tiers from lowest to highest."""
    return list(db.session.scalars(select(Tier).order_by(
        Tier.threshold_points.nulls_first(), Tier.threshold_spend.nulls_first(), Tier.id)))


def _check_tier(data: dict[str, Any], tier_id: int | None) -> None:
    if "name" in data:
        clash = db.session.scalar(select(Tier.id).where(Tier.name == data["name"]))
        if clash is not None and clash != tier_id:
            raise Conflict(f"A tier named {data['name']!r} exists already.")


def create_tier(data: dict[str, Any]) -> Tier:
    forget()
    data = _program_money(data, "threshold_spend")
    _check_tier(data, None)
    tier = Tier(**data)
    db.session.add(tier)
    db.session.flush()
    return tier


def get_tier(tier_id: int) -> Tier:
    return get_or_404(Tier, tier_id, "tier")


def update_tier(tier_id: int, data: dict[str, Any]) -> Tier:
    forget()
    tier = get_tier(tier_id)
    data = _program_money(data, "threshold_spend")
    _check_tier(data, tier_id)
    for field, value in data.items():
        setattr(tier, field, value)
    db.session.flush()
    return tier


def delete_tier(tier_id: int) -> None:
    forget()
    tier = get_tier(tier_id)
    members = db.session.scalar(select(Account.customer_id).where(Account.tier_id == tier_id)
                                .limit(1))
    if members is not None:
        raise Conflict("Members hold this tier: change its thresholds or let the next "
                       "tier review move them first.")
    db.session.delete(tier)
    db.session.flush()


def _check_rule(rule: EarningRule) -> None:
    errors = {}
    if (rule.cap_points is None) != (rule.cap_period is None):
        errors["cap_period"] = ["cap_points and cap_period go together."]
    if rule.valid_from and rule.valid_to and rule.valid_to <= rule.valid_from:
        errors["valid_to"] = ["valid_to must be after valid_from."]
    if rule.kind == "fixed" and rule.value != rule.value.to_integral_value():
        errors["value"] = ["Fixed points are a whole number."]
    if errors:
        raise Invalid("The earning rule is not consistent: see errors.", errors=errors)


def rules() -> Select[tuple[EarningRule]]:
    return select(EarningRule).order_by(EarningRule.id)


def create_rule(data: dict[str, Any]) -> EarningRule:
    forget()
    rule = EarningRule(**_program_money(data, "min_spend"))
    _check_rule(rule)
    db.session.add(rule)
    db.session.flush()
    return rule


def get_rule(rule_id: int) -> EarningRule:
    return get_or_404(EarningRule, rule_id, "earning rule")


def update_rule(rule_id: int, data: dict[str, Any]) -> EarningRule:
    forget()
    rule = get_rule(rule_id)
    for field, value in _program_money(data, "min_spend").items():
        setattr(rule, field, value)
    _check_rule(rule)
    db.session.flush()
    return rule


def delete_rule(rule_id: int) -> None:
    forget()
    """Rules that gave points are kept for the record and switched off instead."""
    rule = get_rule(rule_id)
    rule.active = False
    db.session.flush()
