"""Offers and their coupons: making codes in bulk, checking a code against a basket
(and saying exactly why not), and using codes inside a purchase.

Limits hold under concurrent tills without locking the offer for the whole check: a
coupon's use and the offer's counters are taken with conditional updates
(``... SET uses = uses + 1 WHERE uses < max_uses``); a till that loses the race gets a
409. A member's own limit is checked while their account row is locked.

Partial returns do not give a coupon back: the refund is what was actually paid for the
returned items (the discount is spread over the basket), so nobody gains by buying
above a minimum spend and returning part of it. A full return gives the coupon back
while its offer is still active and valid.
"""

from __future__ import annotations

import csv
import io
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from flask import current_app
from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from crm import audit, signals
from crm.customers import get_customer
from crm.db import db, insert_ignoring_conflicts, utcnow
from crm.errors import Conflict, Invalid, get_or_404
from crm.money import amounts_to_minor, exponent, to_amount
from crm.sql import bulk_insert
from loyalty import settings
from loyalty.earning import Line
from loyalty.models import Coupon, CouponRedemption, Lot, Offer

ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, no 1/I/L

MESSAGES = {
    "not_found": "No coupon has this code.",
    "inactive": "The offer is switched off.",
    "not_yet_valid": "The offer starts on {valid_from}.",
    "expired": "The offer ended on {valid_to}.",
    "customer_required": "This coupon is for members: give the customer.",
    "wrong_customer": "This coupon belongs to another customer.",
    "used": "This coupon has been used.",
    "limit_reached": "The offer has been used as often as it may be.",
    "customer_limit_reached": "This customer has used the offer the most times allowed.",
    "budget_exhausted": "The offer's budget is spent.",
    "wrong_currency": "The offer is in {currency}.",
    "min_spend": "The offer needs a spend of at least {min_spend}.",
    "no_eligible_items": "Nothing in the basket is covered by the offer.",
    "not_combinable": "This coupon cannot be combined with {other}.",
    "duplicate": "The same code is given twice.",
}


def normalize_code(code: str) -> str:
    """Codes are matched case-insensitively, ignoring surrounding space."""
    return code.strip().upper()


# --- offers -------------------------------------------------------------------------------


def _check_offer(offer: Offer) -> None:
    errors: dict[str, list[str]] = {}
    if offer.kind == "percent" and not 0 < offer.value <= 100:
        errors["value"] = ["A percentage between 0 and 100."]
    if offer.kind == "amount":
        places = exponent(offer.currency)
        if offer.value <= 0 or offer.value != offer.value.quantize(Decimal(1).scaleb(-places)):
            errors["value"] = [f"A positive amount with at most {places} decimals."]
    if offer.kind in ("free_item", "bonus_points") and (
            offer.value < 1 or offer.value != offer.value.to_integral_value()):
        errors["value"] = ["A whole number of at least 1."]
    if offer.kind == "points_multiplier" and offer.value <= 1:
        errors["value"] = ["A multiplier above 1."]
    if offer.valid_from and offer.valid_to and offer.valid_to < offer.valid_from:
        errors["valid_to"] = ["Not before valid_from."]
    if errors:
        raise Invalid("The offer is not consistent: see errors.", errors=errors)


# Counters that every use changes are not settings: left out of the offer's audit rows.
_NOT_AUDITED = ("id", "created_at", "updated_at", "uses", "spent")


def create_offer(data: dict[str, Any]) -> Offer:
    currency = data.get("currency") or settings.program().currency
    offer = Offer(**amounts_to_minor({**data, "currency": currency}, currency,
                                     "min_spend", "budget"))
    _check_offer(offer)
    db.session.add(offer)
    db.session.flush()
    audit.record("create", "offer", offer.id, after=audit.columns(offer, _NOT_AUDITED))
    return offer


def get_offer(offer_id: int) -> Offer:
    return get_or_404(Offer, offer_id, "offer")


def update_offer(offer_id: int, data: dict[str, Any]) -> Offer:
    offer = get_offer(offer_id)
    if "currency" in data and data["currency"] != offer.currency and offer.uses:
        raise Conflict("The offer has been used: its currency cannot change.")
    money = amounts_to_minor(data, data.get("currency", offer.currency), "min_spend", "budget")
    before = audit.columns(offer, _NOT_AUDITED)
    for name, value in money.items():
        setattr(offer, name, value)
    _check_offer(offer)
    db.session.flush()
    audit.record_change("update", "offer", offer.id, before, audit.columns(offer, _NOT_AUDITED))
    return offer


def list_offers() -> Select[tuple[Offer]]:
    return select(Offer).order_by(Offer.id)


# --- codes --------------------------------------------------------------------------------


def random_codes(count: int, length: int, prefix: str = "") -> list[str]:
    """``count`` random codes of ``length`` characters from ALPHABET (about 5 bits of
    entropy each), after ``prefix``. Unbiased: bytes past the last whole multiple of
    the alphabet's size are dropped."""
    limit = 256 - 256 % len(ALPHABET)
    chars: list[str] = []
    while len(chars) < count * length:
        chars += [ALPHABET[b % len(ALPHABET)]
                  for b in secrets.token_bytes(count * length * 2) if b < limit]
    return [prefix + "".join(chars[i * length:(i + 1) * length]) for i in range(count)]


def issue_codes(offer: Offer, count: int, *, prefix: str = "", length: int = 10,
                customer_id: int | None = None, batch: str | None = None
                ) -> tuple[str, list[str]]:
    """Make ``count`` unique codes for ``offer`` in bulk, in a new batch or adding to
    ``batch`` (a large batch made a part at a time); return the batch id and the codes
    made. A code that happens to exist already is drawn again."""
    batch = batch or secrets.token_hex(8)
    now = utcnow()
    had = set(db.session.scalars(select(Coupon.code).where(Coupon.batch == batch)))
    made: list[str] = []
    while len(made) < count:
        codes = random_codes(count - len(made), length, prefix)
        db.session.execute(
            insert_ignoring_conflicts(Coupon, "code"),
            [{"offer_id": offer.id, "code": code, "batch": batch, "customer_id": customer_id,
              "max_uses": 1, "uses": 0, "created_at": now} for code in codes],
        )
        made = [code for code in db.session.scalars(
            select(Coupon.code).where(Coupon.batch == batch)) if code not in had]
    return batch, made


def issue_personal(offer: Offer, customer_ids: list[int], length: int = 10
                   ) -> dict[int, tuple[int, str]]:
    """One single-use personal coupon of ``offer`` for each customer, in bulk: customer
    id -> (coupon id, code). Codes are drawn from 31^10 values, so a batch is written
    at once (COPY on PostgreSQL); in the rare batch where a code exists already, the
    batch is rolled back to its savepoint and written again skipping taken codes, and
    those customers get new codes."""
    batch = secrets.token_hex(8)
    now = utcnow()

    def rows(customers: list[int]) -> list[dict[str, Any]]:
        return [{"offer_id": offer.id, "code": code, "batch": batch, "customer_id": customer,
                 "max_uses": 1, "uses": 0, "created_at": now}
                for customer, code in zip(customers, random_codes(len(customers), length),
                                          strict=True)]

    first = rows(customer_ids)
    try:
        with db.session.begin_nested():
            bulk_insert(Coupon.__table__, first)
    except IntegrityError:
        db.session.execute(insert_ignoring_conflicts(Coupon, "code"), first)
    made: dict[int, tuple[int, str]] = {}
    while True:
        made = {customer: (coupon_id, code) for coupon_id, customer, code in db.session.execute(
            select(Coupon.id, Coupon.customer_id, Coupon.code).where(Coupon.batch == batch))}
        missing = [c for c in customer_ids if c not in made]
        if not missing:
            return made
        db.session.execute(insert_ignoring_conflicts(Coupon, "code"), rows(missing))


def issue(offer_id: int, count: int, *, prefix: str = "", length: int = 10,
          customer_id: int | None = None, batch: str | None = None) -> dict[str, Any]:
    """A batch of codes, or one personal coupon; the codes listed when at most 1000.
    Given ``batch``, the codes are added to that batch of the offer."""
    offer = get_offer(offer_id)
    if customer_id is not None:
        get_customer(customer_id)
    if batch is not None and not db.session.scalar(select(Coupon.id).where(
            Coupon.batch == batch, Coupon.offer_id == offer.id).limit(1)):
        raise Invalid(f"The offer has no batch {batch!r}.", errors={"batch": ["No such batch."]})
    batch, codes = issue_codes(offer, count, prefix=prefix, length=length,
                               customer_id=customer_id, batch=batch)
    audit.record("issue_coupons", "offer", offer.id,  # the codes themselves are secrets
                 after={"batch": batch, "count": len(codes), "customer_id": customer_id})
    return {"offer_id": offer.id, "batch": batch, "count": len(codes),
            "codes": codes if len(codes) <= 1000 else []}


def coupons_of(offer_id: int, batch: str | None = None) -> Select[tuple[Coupon]]:
    get_offer(offer_id)
    stmt = select(Coupon).where(Coupon.offer_id == offer_id).order_by(Coupon.id)
    return stmt if batch is None else stmt.where(Coupon.batch == batch)


def coupons_csv(offer_id: int, batch: str | None = None) -> Iterator[str]:
    """The offer's codes (or one batch's) as CSV for printing, in parts. The rows are read
    first, since the session closes with the request while the answer streams: a million
    codes are some tens of MB of tuples."""
    rows = db.session.execute(coupons_of(offer_id, batch).with_only_columns(
        Coupon.code, Coupon.offer_id, Coupon.batch, Coupon.customer_id, Coupon.uses,
        Coupon.max_uses)).all()

    def parts() -> Iterator[str]:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["code", "offer_id", "batch", "customer_id", "uses", "max_uses"])
        for n, c in enumerate(rows, 1):
            writer.writerow([c.code, c.offer_id, c.batch or "", c.customer_id or "", c.uses,
                             c.max_uses])
            if n % 1000 == 0:
                yield out.getvalue()
                out.seek(0)
                out.truncate()
        yield out.getvalue()

    return parts()


def batches_of(offer_id: int) -> list[Any]:
    """The offer's printed batches: (batch, codes, uses), oldest first."""
    return list(db.session.execute(
        select(Coupon.batch, func.count(), func.sum(Coupon.uses))
        .where(Coupon.offer_id == offer_id, Coupon.batch.is_not(None))
        .group_by(Coupon.batch).order_by(func.min(Coupon.id))))


def customer_coupons(customer_id: int, today: date) -> list[tuple[Coupon, Offer]]:
    """The member's own coupons that can still be used."""
    return list(db.session.execute(
        select(Coupon, Offer).join(Offer, Offer.id == Coupon.offer_id)
        .where(Coupon.customer_id == customer_id, Coupon.uses < Coupon.max_uses,
               Offer.active, or_(Offer.valid_to.is_(None), Offer.valid_to >= today))
        .order_by(Offer.valid_to.is_(None), Offer.valid_to, Coupon.id)))


def coupons_expiring(today: date, within_days: int) -> Select[Any]:
    """Unused personal coupons whose offer ends within ``within_days``."""
    return (select(Coupon.customer_id, Coupon.code, Offer.id.label("offer_id"),
                   Offer.name.label("offer_name"), Offer.valid_to)
            .join(Offer, Offer.id == Coupon.offer_id)
            .where(Coupon.customer_id.is_not(None), Coupon.uses < Coupon.max_uses,
                   Offer.active, Offer.valid_to >= today,
                   Offer.valid_to <= today + timedelta(days=within_days))
            .order_by(Offer.valid_to, Coupon.id))


def points_expiring(now: datetime, within_days: int) -> Select[Any]:
    """Per member, the points that expire within ``within_days`` and when first."""
    return (select(Lot.customer_id, func.sum(Lot.remaining).label("points"),
                   func.min(Lot.expires_at).label("first_expiry"))
            .where(Lot.released, Lot.remaining > 0, Lot.expires_at > now,
                   Lot.expires_at <= now + timedelta(days=within_days))
            .group_by(Lot.customer_id).order_by(Lot.customer_id))


# --- checking codes against a basket ------------------------------------------------------


@dataclass
class Check:
    code: str
    reason: str | None = None
    message: str | None = None
    coupon: Coupon | None = None
    offer: Offer | None = None
    discount: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return self.reason is None

    def refuse(self, reason: str, **values: Any) -> Check:
        self.reason, self.message = reason, MESSAGES[reason].format(**values)
        self.discount = 0
        return self


def _eligible(offer: Offer, lines: list[Line], total: int) -> list[Line]:
    """The lines the offer covers. A basket given by its total alone (no lines yet: a
    cart page, a till asking early) is one line of that total for an offer that needs no
    line detail; an offer on skus, categories or free items covers nothing in it."""
    if not lines:
        needs_lines = offer.skus or offer.categories or offer.kind == "free_item"
        return [] if needs_lines else [Line("", None, 1, total)]
    if not offer.skus and not offer.categories:
        return lines
    return [ln for ln in lines
            if ln.sku in offer.skus or (ln.category and ln.category in offer.categories)]


def _discount(offer: Offer, total: int, eligible: list[Line]) -> int:
    amount = min(sum(ln.amount for ln in eligible), total)
    if offer.kind == "percent":
        off = (Decimal(amount) * offer.value / 100).quantize(Decimal(1), ROUND_HALF_UP)
        return int(off)
    if offer.kind == "amount":
        return min(int(offer.value.scaleb(exponent(offer.currency))), amount)
    if offer.kind == "free_item":
        units = sorted(ln.unit_price for ln in eligible for _ in range(ln.quantity))
        return min(sum(units[:int(offer.value)]), total)
    return 0


def check_codes(codes: list[str], *, total: int, lines: list[Line], currency: str,
                customer_id: int | None, today: date) -> list[Check]:
    """Check each code against the basket, as a till would use them together. Reads only:
    two queries whatever the number of codes."""
    checks = [Check(code=normalize_code(c)) for c in codes]
    wanted = {c.code for c in checks}
    found = {coupon.code: (coupon, offer) for coupon, offer in db.session.execute(
        select(Coupon, Offer).join(Offer, Offer.id == Coupon.offer_id)
        .where(Coupon.code.in_(wanted)))}
    used_by_member: dict[int, int] = {}
    if customer_id is not None and found:
        used_by_member = dict(db.session.execute(
            select(CouponRedemption.offer_id, func.count())
            .where(CouponRedemption.customer_id == customer_id,
                   CouponRedemption.reversed_at.is_(None),
                   CouponRedemption.offer_id.in_({o.id for _, o in found.values()}))
            .group_by(CouponRedemption.offer_id)).all())
    seen: set[str] = set()
    for check in checks:
        if check.code in seen:
            check.refuse("duplicate")
            continue
        seen.add(check.code)
        if check.code not in found:
            check.refuse("not_found")
            continue
        check.coupon, check.offer = found[check.code]
        _check_one(check, total, lines, currency, customer_id, today,
                   used_by_member.get(check.offer.id, 0))
    good = [c for c in checks if c.valid]
    if len(good) > 1:
        for check in good:
            if not check.offer.stackable:
                other = next(c.code for c in good if c is not check)
                check.refuse("not_combinable", other=other)
    return checks


def _check_one(check: Check, total: int, lines: list[Line], currency: str,
               customer_id: int | None, today: date, member_uses: int) -> None:
    coupon, offer = check.coupon, check.offer
    if not offer.active:
        check.refuse("inactive")
    elif offer.valid_from and today < offer.valid_from:
        check.refuse("not_yet_valid", valid_from=offer.valid_from.isoformat())
    elif offer.valid_to and today > offer.valid_to:
        check.refuse("expired", valid_to=offer.valid_to.isoformat())
    elif (coupon.customer_id or offer.per_customer_limit) and customer_id is None:
        check.refuse("customer_required")
    elif coupon.customer_id and coupon.customer_id != customer_id:
        check.refuse("wrong_customer")
    elif coupon.uses >= coupon.max_uses:
        check.refuse("used")
    elif offer.total_limit is not None and offer.uses >= offer.total_limit:
        check.refuse("limit_reached")
    elif offer.per_customer_limit is not None and member_uses >= offer.per_customer_limit:
        check.refuse("customer_limit_reached")
    elif offer.budget is not None and offer.spent >= offer.budget:
        check.refuse("budget_exhausted")
    elif currency != offer.currency:
        check.refuse("wrong_currency", currency=offer.currency)
    else:
        eligible = _eligible(offer, lines, total)
        spend = sum(ln.amount for ln in eligible)
        if not eligible:
            check.refuse("no_eligible_items")
        elif offer.min_spend is not None and min(spend, total) < offer.min_spend:
            check.refuse("min_spend", min_spend=to_amount(offer.min_spend, offer.currency))
        else:
            check.discount = _discount(offer, total, eligible)
            if offer.budget is not None:
                check.discount = min(check.discount, offer.budget - offer.spent)


def refused(checks: Iterable[Check]) -> Invalid | None:
    """The 422 for codes that do not apply, naming each code and why."""
    bad = [c for c in checks if not c.valid]
    if not bad:
        return None
    return Invalid(
        "Some coupons do not apply: " + "; ".join(f"{c.code}: {c.message}" for c in bad),
        errors={"coupon_codes": {c.code: [c.message] for c in bad}},
        coupon_reasons={c.code: c.reason for c in bad},
    )


# --- using codes in a purchase -------------------------------------------------------------


def redeem(checks: list[Check], purchase_id: int, customer_id: int | None) -> None:
    """Use checked codes in a purchase: a conditional update per coupon and offer, so a
    code used by another till meanwhile (or an offer's limit or budget just reached) is a
    409 and nothing is written."""
    for check in checks:
        taken = db.session.execute(
            update(Coupon.__table__).where(Coupon.id == check.coupon.id,
                                           Coupon.uses < Coupon.max_uses)
            .values(uses=Coupon.uses + 1)).rowcount
        if not taken:
            raise Conflict(f"The coupon {check.code} has just been used elsewhere.")
        counted = db.session.execute(
            update(Offer.__table__).where(
                Offer.id == check.offer.id,
                or_(Offer.total_limit.is_(None), Offer.uses < Offer.total_limit),
                or_(Offer.budget.is_(None), Offer.spent + check.discount <= Offer.budget))
            .values(uses=Offer.uses + 1, spent=Offer.spent + check.discount)).rowcount
        if not counted:
            raise Conflict(f"The offer of {check.code} has just reached its limit or budget.")
        db.session.add(CouponRedemption(coupon_id=check.coupon.id, offer_id=check.offer.id,
                                        purchase_id=purchase_id, customer_id=customer_id,
                                        discount=check.discount,
                                        bonus_points=check.details.get("bonus_points", 0)))
        signals.coupon_redeemed.send(current_app._get_current_object(),
                                     coupon_id=check.coupon.id, offer_id=check.offer.id,
                                     purchase_id=purchase_id, customer_id=customer_id,
                                     discount_minor=check.discount)


def used_in(purchase_id: int) -> list[tuple[Check, CouponRedemption]]:
    """The coupons a purchase used, as checks (for their effects) with their rows."""
    rows = db.session.execute(
        select(CouponRedemption, Coupon, Offer)
        .join(Coupon, Coupon.id == CouponRedemption.coupon_id)
        .join(Offer, Offer.id == CouponRedemption.offer_id)
        .where(CouponRedemption.purchase_id == purchase_id,
               CouponRedemption.reversed_at.is_(None))
        .order_by(CouponRedemption.id)).all()
    return [(Check(code=coupon.code, coupon=coupon, offer=offer, discount=r.discount), r)
            for r, coupon, offer in rows]


def bonus_points(checks: list[Check], base_points: int) -> int:
    """Points the purchase's points offers add to ``base_points``; noted on each check."""
    total = 0
    for check in checks:
        if check.offer.kind == "points_multiplier":
            extra = int((base_points * (check.offer.value - 1)).to_integral_value(ROUND_HALF_UP))
        elif check.offer.kind == "bonus_points":
            extra = int(check.offer.value)
        else:
            continue
        check.details["bonus_points"] = extra
        total += extra
    return total


def applied(checks: list[Check], currency: str) -> list[dict[str, Any]]:
    """What the purchase answer lists under ``coupons_applied``."""
    return [{"code": c.code, "offer_id": c.offer.id, "kind": c.offer.kind,
             "discount": to_amount(c.discount, currency),
             "bonus_points": c.details.get("bonus_points", 0)} for c in checks]


def give_back(purchase_id: int, today: date) -> int:
    """After a full return: restore the purchase's coupons whose offer is still active
    and valid. Returns how many came back."""
    rows = db.session.execute(
        select(CouponRedemption, Offer).join(Offer, Offer.id == CouponRedemption.offer_id)
        .where(CouponRedemption.purchase_id == purchase_id,
               CouponRedemption.reversed_at.is_(None))).all()
    restored = 0
    for redemption, offer in rows:
        if not offer.active or (offer.valid_to and offer.valid_to < today):
            continue
        redemption.reversed_at = utcnow()
        db.session.execute(update(Coupon.__table__).where(Coupon.id == redemption.coupon_id)
                           .values(uses=Coupon.uses - 1))
        db.session.execute(update(Offer.__table__).where(Offer.id == offer.id)
                           .values(uses=Offer.uses - 1, spent=Offer.spent - redemption.discount))
        restored += 1
    return restored
