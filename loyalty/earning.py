"""How many points a purchase earns. Pure functions: no database here.

Points are earned on what was actually paid for the lines: the basket total less coupon
and points discounts, less the tax and the till's own charges (positive adjustments:
delivery, fees), spread over the lines in proportion to their amounts (the till's
markdowns, negative adjustments, are already off the total); lines marked
``earns: false`` (rewards, gift cards, deposits) earn nothing. Base points are the paid
amount in currency units times ``points_per_unit`` times the member's tier multiplier.
Earning rules add bonuses on top: a ``multiplier`` rule gives (value - 1) times the base
points of the lines it matches, a ``fixed`` rule a number of points once per purchase.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from fractions import Fraction

from loyalty.models import EarningRule, Program

ROUNDING_MODES = {"floor": ROUND_FLOOR, "round": ROUND_HALF_UP, "ceil": ROUND_CEILING}


@dataclass
class Line:
    sku: str
    category: str | None
    quantity: int
    unit_price: int  # minor units
    earns: bool = True

    @property
    def amount(self) -> int:
        return self.quantity * self.unit_price


@dataclass
class Basket:
    store_code: str
    local_time: datetime  # in the store's time zone
    exponent: int  # decimals of the currency
    total: int
    paid: int  # total less discounts: what the customer paid, tax included
    lines: list[Line]
    tax: int = 0
    charges: int = 0  # the till's positive adjustments, which earn nothing

    @property
    def paid_for_lines(self) -> int:
        """What was paid for the goods: never the tax, nor charges beside the lines."""
        return max(0, self.paid - self.tax - self.charges)


@dataclass
class Member:
    multiplier: Decimal = Decimal(1)
    first_purchase: bool = False
    birth_month: int | None = None  # 1-12 (the birthday itself is sealed)


@dataclass
class Earned:
    base: int = 0
    awards: dict[int, int] = field(default_factory=dict)  # rule id -> bonus points

    @property
    def total(self) -> int:
        return self.base + sum(self.awards.values())


def to_points(value: Decimal | Fraction, rounding: str) -> int:
    if isinstance(value, Fraction):
        value = Decimal(value.numerator) / Decimal(value.denominator)
    return int(value.quantize(Decimal(1), rounding=ROUNDING_MODES[rounding]))


def paid_share(basket: Basket, lines: Iterable[Line]) -> Fraction:
    """The part of what was paid for the lines (minor units) that falls on ``lines``."""
    all_amount = sum(line.amount for line in basket.lines)
    part = sum(line.amount for line in lines)
    if all_amount == 0:
        return Fraction(0)
    return Fraction(basket.paid_for_lines * part, all_amount)


def _units(minor: Fraction, exponent: int) -> Fraction:
    return minor / 10**exponent


def _matches(rule: EarningRule, basket: Basket, member: Member) -> list[Line]:
    """The lines a rule applies to (all earning lines if it names no sku or category),
    or none when a purchase-level condition fails."""
    when = basket.local_time
    if rule.store_codes and basket.store_code not in rule.store_codes:
        return []
    if rule.weekdays and when.weekday() not in rule.weekdays:
        return []
    if rule.valid_from and when < rule.valid_from:
        return []
    if rule.valid_to and when >= rule.valid_to:
        return []
    if rule.first_purchase and not member.first_purchase:
        return []
    if rule.birthday_month and (member.birth_month is None
                                or member.birth_month != when.month):
        return []
    lines = [line for line in basket.lines if line.earns]
    if rule.skus or rule.categories:
        lines = [line for line in lines
                 if line.sku in rule.skus or (line.category and line.category in rule.categories)]
    if rule.min_spend and paid_share(basket, lines) < rule.min_spend:
        return []
    return lines


def points_for(basket: Basket, program: Program, member: Member,
               rules: Iterable[EarningRule], cap_left: dict[int, int]) -> Earned:
    """Points the basket earns. ``cap_left`` gives, for capped rules, how many bonus
    points each may still give this member in its current period."""
    earning = [line for line in basket.lines if line.earns]
    units = _units(paid_share(basket, earning), basket.exponent)
    rate = Fraction(program.points_per_unit)
    earned = Earned(base=to_points(units * rate * Fraction(member.multiplier),
                                   program.rounding))
    for rule in rules:
        lines = _matches(rule, basket, member)
        if not lines:
            continue
        if rule.kind == "fixed":
            bonus = int(rule.value)
        else:
            share = _units(paid_share(basket, lines), basket.exponent)
            bonus = to_points(share * rate * (Fraction(rule.value) - 1), program.rounding)
        if rule.id in cap_left:
            bonus = min(bonus, cap_left[rule.id])
        if bonus > 0:
            earned.awards[rule.id] = bonus
    return earned
