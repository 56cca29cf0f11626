"""Purchases from tills and the shop, their claims and returns.

A purchase is unique per (store, receipt): the row is claimed first with
``INSERT ... ON CONFLICT DO NOTHING``, so a retried post (even one racing the first)
finds the original and gets its answer again; the same receipt with another body is a
409. A return is unique per (store, return_id) the same way. A return whose purchase
has not arrived yet (tills syncing out of order) is held and applied when it comes.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import bindparam, literal_column, select

from crm import access, signals
from crm.auth import actor_of
from crm.customers import LOOKUPS, customer_lookup, customer_ref, find_customer
from crm.db import db, insert_ignoring_conflicts, utcnow
from crm.errors import Conflict, DomainError, Forbidden, Invalid, NotFound
from crm.keys import Caller, StoreRef
from crm.models import Store
from crm.money import MAX_MINOR, InvalidAmount, exponent, to_amount, to_minor, to_signed_minor
from crm.sql import Sql, Statement, as_time, insert_for, lock
from loyalty import accounts, coupons, fraud, ledger, settings, tiers, verification
from loyalty.earning import Basket, Line, Member, points_for, to_points
from loyalty.ledger import Account
from loyalty.models import (
    RETURN_WAITING,
    EarningRule,
    Program,
    Purchase,
    PurchaseLine,
    PurchaseReturn,
    RuleAward,
    Tier,
)

_P, _R = Purchase.__table__, PurchaseReturn.__table__


def request_hash(data: dict[str, Any]) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def store_for(key: Caller, store_code: str | None) -> Store | StoreRef:
    """A key bound to a store (a till's) posts for that store only; other keys name
    the store."""
    if key.store is not None:
        if store_code not in (None, key.store.code):
            raise Forbidden(f"This key belongs to store {key.store.code} and cannot post "
                            f"for {store_code}.")
        return key.store
    if store_code is None:
        raise Invalid("Name the store: store_code.", errors={"store_code": ["Required."]})
    store = db.session.scalar(select(Store).where(Store.code == store_code))
    if store is None:
        raise Invalid(f"No store has the code {store_code!r}.",
                      errors={"store_code": ["No such store."]})
    access.check_store_channel(key, store)
    return store


def _money(value: str, currency: str, field: str, *, signed: bool = False) -> int:
    try:
        return (to_signed_minor if signed else to_minor)(value, currency)
    except InvalidAmount as e:
        raise Invalid(f"{field}: {e}", errors={field: [str(e)]}) from None


def check_total(total: int, lines: list[Line], tax: int, adjustments: int,
                currency: str) -> None:
    """The sale's ``total`` is its lines (quantity x unit price) plus tax plus the till's
    adjustments, give or take one minor unit per line (a till rounding each line's tax
    or markdown); else a 422 naming the difference."""
    goods = sum(line.amount for line in lines)
    expected = goods + tax + adjustments
    off = total - expected
    if abs(off) <= len(lines):
        return

    def amount(minor: int) -> str:
        return to_amount(minor, currency)

    detail = (f"total {amount(total)} is not the lines {amount(goods)} + tax {amount(tax)} "
              f"+ adjustments {amount(adjustments)} = {amount(expected)}: it is off by "
              f"{amount(off)} {currency} (at most {amount(len(lines))} is taken for "
              "rounding, one minor unit per line).")
    raise Invalid(detail[0].upper() + detail[1:],
                  errors={"total": [f"Off by {amount(off)}: expected {amount(expected)}."]},
                  difference=amount(off), expected_total=amount(expected))


def _lines(raw: list[dict[str, Any]], currency: str) -> list[Line]:
    errors: dict[str, Any] = {}
    lines = []
    for i, line in enumerate(raw):
        try:
            price = to_minor(line["unit_price"], currency)
        except InvalidAmount as e:
            errors[f"lines.{i}.unit_price"] = [str(e)]
            continue
        if price * line["quantity"] > MAX_MINOR:
            errors[f"lines.{i}.quantity"] = ["The line's amount is larger than any taken."]
            continue
        lines.append(Line(line["sku"], line.get("category"), line["quantity"], price,
                          line.get("earns", True)))
    if errors:
        raise Invalid("Some lines are not valid: see errors.", errors=errors)
    return lines


def answer(purchase: Purchase | Sale, store_code: str) -> dict[str, Any]:
    """The body a purchase post answers, the first time and on every replay."""
    return {
        "id": purchase.id, "store_code": store_code, "receipt_id": purchase.receipt_id,
        "customer_id": purchase.customer_id, "occurred_at": purchase.occurred_at,
        "currency": purchase.currency, "total": to_amount(purchase.total, purchase.currency),
        "tax": to_amount(purchase.tax, purchase.currency),
        "adjustments": to_amount(purchase.adjustments, purchase.currency),
        "discount": to_amount(purchase.discount, purchase.currency),
        "paid": to_amount(purchase.paid, purchase.currency),
        "points_earned": purchase.points_earned, "points_pending": purchase.points_pending,
        "points_redeemed": purchase.points_redeemed,
        "coupons_applied": purchase.coupons_applied, "balance": purchase.balance_after,
        "tier": purchase.tier_after,
    }


def _replay(model: type, digest: str, **unique: Any) -> Any:
    row = db.session.scalar(select(model).filter_by(**unique))
    if row.request_hash != digest:
        raise Conflict(f"{', '.join(f'{k}={v}' for k, v in unique.items())} was posted "
                       "before with a different body.")
    return row


def _claim(model: type, conflict: tuple[str, ...], values: dict[str, Any]) -> Any:
    stmt = (insert_ignoring_conflicts(model, *conflict).values(**values)
            .returning(model))
    return db.session.scalar(stmt, execution_options={"populate_existing": True})


@dataclass
class Context:
    """What earning needs, read before anything is written (so that one flush at the
    end writes everything)."""

    program: Program
    tiers: list[Tier]
    rules: list[EarningRule]
    store: Store | StoreRef
    actor: str


def _context(store: Store | StoreRef, key: Caller, at: datetime) -> Context:
    cached = settings.snapshot()
    rules = [r for r in cached.rules if (r.valid_from is None or r.valid_from <= at)
             and (r.valid_to is None or r.valid_to > at)]
    return Context(cached.program, cached.tiers, rules, store, actor_of(key))


def _period_start(period: str, local: datetime) -> datetime:
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    if period == "year":
        return day.replace(month=1, day=1)
    return datetime(1970, 1, 1, tzinfo=local.tzinfo)


_AWARDS = RuleAward.__table__
_CAP_USED = Statement(select(_AWARDS.c.rule_id, _AWARDS.c.occurred_at, _AWARDS.c.points).where(
    _AWARDS.c.customer_id == bindparam("customer_id"),
    _AWARDS.c.occurred_at >= bindparam("since")))
_OTHER_PURCHASE = Statement(select(literal_column("1")).where(
    _P.c.customer_id == bindparam("customer_id"), _P.c.id != bindparam("purchase_id"))
    .limit(1))
_INSERT_AWARDS = Statement(_AWARDS.insert().inline(),
                           columns=["rule_id", "customer_id", "purchase_id", "points",
                                    "occurred_at"])


def _cap_left(sql: Sql, rules: list[EarningRule], customer_id: int,
              local: datetime) -> dict[int, int]:
    capped = {r.id: (r.cap_points, _period_start(r.cap_period, local)) for r in rules
              if r.cap_points is not None}
    if not capped:
        return {}
    used: dict[int, int] = defaultdict(int)
    rows = sql.run(_CAP_USED, {"customer_id": customer_id,
                               "since": min(start for _, start in capped.values())}).all()
    for rule_id, occurred_at, points in rows:
        if rule_id in capped and as_time(occurred_at) >= capped[rule_id][1]:
            used[rule_id] += points
    return {rid: max(0, cap - used[rid]) for rid, (cap, _) in capped.items()}


def _first_purchase(sql: Sql, customer_id: int, purchase_id: int) -> bool:
    """No other purchase of the member is on record (whatever its date), so a till
    syncing an older receipt late never gives the bonus twice."""
    return sql.run(_OTHER_PURCHASE, {"customer_id": customer_id,
                                     "purchase_id": purchase_id}).one() is None


def _award(sql: Sql, purchase: Sale | Purchase, account: Account, lines: list[Line],
           ctx: Context, checks: list[coupons.Check] = ()) -> None:
    """Earn the purchase's points for its member: base times tier, plus rules, plus
    what its points coupons add (a lot of their own, cause "coupon")."""
    local = purchase.occurred_at.astimezone(ZoneInfo(ctx.store.timezone))
    rules = ctx.rules
    tier = next((t for t in ctx.tiers if t.id == account.tier_id), None)
    first = any(r.first_purchase for r in rules) and _first_purchase(
        sql, account.customer_id, purchase.id)
    member = Member(multiplier=tier.multiplier if tier else 1, first_purchase=first,
                    birth_month=account.birth_month)
    basket = Basket(ctx.store.code, local, exponent(purchase.currency), purchase.total,
                    purchase.paid, lines, tax=purchase.tax,
                    charges=max(purchase.adjustments, 0))
    earned = points_for(basket, ctx.program, member, rules,
                        _cap_left(sql, rules, account.customer_id, local))
    lot = ledger.earn(account, ctx.program, earned.total, cause="purchase",
                      occurred_at=purchase.occurred_at, purchase_id=purchase.id,
                      actor=ctx.actor)
    sql.run_many(_INSERT_AWARDS, [
        {"rule_id": rid, "customer_id": account.customer_id, "purchase_id": purchase.id,
         "points": points, "occurred_at": purchase.occurred_at}
        for rid, points in earned.awards.items()])
    bonus = coupons.bonus_points(list(checks), earned.base)
    bonus_lot = ledger.earn(account, ctx.program, bonus, cause="coupon",
                            occurred_at=purchase.occurred_at, purchase_id=purchase.id,
                            actor=ctx.actor)
    purchase.points_earned = earned.total + bonus
    purchase.points_pending = sum(made.points for made in (lot, bonus_lot)
                                  if made is not None and not made.released)


def _redeem(sale: Sale, account: Account, points: int, ctx: Context) -> None:
    """Points as tender: never more than the purchase is worth. The discount is the
    points' value, rounded down, and at most the total; the last point may cover a
    fraction of a cent so that whole-point rounding never blocks paying the rest."""
    value = Fraction(ctx.program.point_value) * 10 ** exponent(sale.currency)
    left = sale.total - sale.discount  # after coupons
    worth = -(-left // value) if value else 0  # ceil
    if points > worth:
        raise Invalid(f"This purchase is worth at most {int(worth)} points.",
                      errors={"redeem_points": [f"At most {int(worth)} for this purchase."]})
    ledger.spend(account, ctx.program, points, kind="redeem", cause="purchase",
                 purchase_id=sale.id, actor=ctx.actor, occurred_at=sale.occurred_at)
    sale.points_redeemed = points
    sale.discount += min(int(points * value), left)
    sale.paid = sale.total - sale.discount


def _local_day(at: datetime, store: Store | StoreRef) -> date:
    return at.astimezone(ZoneInfo(store.timezone)).date()


def _use_coupons(sale: Sale, lines: list[Line], store: Store | StoreRef
                 ) -> list[coupons.Check]:
    """Check the sale's coupon codes (the member's account is locked already) and take
    their discount off what is paid; 422 naming each code that does not apply."""
    checks = coupons.check_codes(sale.codes, total=sale.total, lines=lines,
                                 currency=sale.currency, customer_id=sale.customer_id,
                                 today=_local_day(sale.occurred_at, store))
    error = coupons.refused(checks)
    if error:
        raise error
    left = sale.total  # stacked coupons never take off more than the total
    for check in checks:
        check.discount = min(check.discount, left)
        left -= check.discount
    sale.discount = sale.total - left
    sale.paid = left
    return checks


def validate_coupon(data: dict[str, Any], key: Caller) -> dict[str, Any]:
    """Would this code apply to this basket (with these other codes), and how much
    would it take off? Reads only."""
    store = store_for(key, data.get("store_code"))
    basket = data["basket"]
    currency = basket.get("currency") or store.currency
    total = _money(basket["total"], currency, "basket.total")
    lines = _lines(basket["lines"], currency)
    customer = find_customer(data["customer"]) if data.get("customer") else None
    checks = coupons.check_codes([data["code"], *data.get("with_codes", [])], total=total,
                                 lines=lines, currency=currency,
                                 customer_id=customer.id if customer else None,
                                 today=_local_day(utcnow(), store))
    check = checks[0]
    return {"code": check.code, "valid": check.valid, "reason": check.reason,
            "message": check.message, "discount": to_amount(check.discount, currency),
            "offer": {"id": check.offer.id, "name": check.offer.name,
                      "kind": check.offer.kind} if check.offer else None}


def _upgrade(account: Account, ctx: Context) -> None:
    """Move the member up a tier if they reached one: everything the purchase changed is
    written by now, so the tier counts what was paid."""
    if ctx.tiers:
        tiers.upgrade_if_qualified(account, ctx.tiers, ctx.program)


def _note_standing(purchase: Sale | Purchase, account: Account | None, ctx: Context) -> None:
    """Note the member's balance and tier after the purchase on it."""
    if account is not None:
        purchase.balance_after = account.balance
        purchase.tier_after = next((t.name for t in ctx.tiers if t.id == account.tier_id),
                                   None)


@dataclass(slots=True)
class Sale:
    """A till's or the shop's sale, from the request to the answer: what was posted,
    and the figures this service worked out. ``CLAIMED`` fields are written when the
    receipt is claimed; ``FIGURES`` (the points and coupons) and ``STANDING`` (the
    member's balance and tier after it) together once done, or one after the other when
    held returns or tiers must read the figures first."""

    store_id: int
    receipt_id: str
    request_hash: str
    occurred_at: datetime
    currency: str
    total: int
    paid: int
    created_at: datetime
    codes: list[str]
    tax: int = 0
    adjustments: int = 0
    id: int = 0
    customer_id: int | None = None
    discount: int = 0
    points_earned: int = 0
    points_pending: int = 0
    points_redeemed: int = 0
    coupons_applied: list[dict[str, Any]] = field(default_factory=list)
    returned_paid: int = 0
    points_reversed: int = 0
    points_restored: int = 0
    balance_after: int | None = None
    tier_after: str | None = None

    CLAIMED = ("store_id", "receipt_id", "request_hash", "occurred_at", "currency", "total",
               "tax", "adjustments", "discount", "paid", "points_earned", "points_pending",
               "points_redeemed", "coupons_applied", "returned_paid", "points_reversed",
               "points_restored", "created_at")
    FIGURES = ("discount", "paid", "points_earned", "points_pending", "points_redeemed",
               "coupons_applied")
    STANDING = ("balance_after", "tier_after")
    RESULT = FIGURES + STANDING

    def values(self, names: tuple[str, ...]) -> dict[str, Any]:
        return {name: getattr(self, name) for name in names}


def _held_returns() -> Any:
    """Whether returns of the claimed receipt were posted before it (the partial index of
    held returns answers it), for the claim's RETURNING. Written out: SQLAlchemy renders
    SQLite's RETURNING without table names, which would leave the two tables' columns
    of the same names indistinguishable. The names come from the tables, so a renamed
    column fails at import."""
    r, p = _R.name, _P.name
    same = " AND ".join(f"{r}.{_R.c[name].name} = {p}.{_P.c[name].name}"
                        for name in ("store_id", "receipt_id"))
    return literal_column(f"EXISTS (SELECT 1 FROM {r} WHERE {same} AND {RETURN_WAITING})")


_HELD = _held_returns()


def _claim_statement(lookup: str | None) -> Statement:
    """Claim the receipt: insert it unless it is there, find the member by ``lookup``
    and say whether returns of it are held, all in one statement."""
    def build(dialect: str) -> Any:
        stmt = insert_for(dialect, _P)
        if lookup is not None:
            stmt = stmt.values(customer_id=customer_ref(lookup))
        return (stmt.on_conflict_do_nothing(index_elements=["store_id", "receipt_id"])
                .returning(_P.c.id, _P.c.customer_id, _HELD))
    return Statement(build, columns=list(Sale.CLAIMED))


_CLAIM = {lookup: _claim_statement(lookup) for lookup in (None, *LOOKUPS)}
_LINES = Statement(PurchaseLine.__table__.insert().inline(),
                   columns=["purchase_id", "sku", "category", "quantity", "unit_price",
                            "amount", "earns", "returned_quantity"])
_SALE_FIGURES = Statement(_P.update().where(_P.c.id == bindparam("sale_id")),
                          columns=list(Sale.FIGURES))
_SALE_STANDING = Statement(_P.update().where(_P.c.id == bindparam("sale_id")),
                           columns=list(Sale.STANDING))
_SALE_RESULT = Statement(_P.update().where(_P.c.id == bindparam("sale_id")),
                         columns=list(Sale.RESULT))


def record_purchase(data: dict[str, Any], key: Caller) -> tuple[dict[str, Any], bool]:
    """Record a sale; return its answer and whether it is new (False: a replay).

    Every till posts every sale here, so it is written with hand-written statements
    (crm/sql.py) rather than the ORM: the receipt is claimed by its unique (store,
    receipt), which also finds the member; then the lines, the member's locked account
    (with its lots when redeeming), the ledger's rows and the sale's figures, a dozen
    statements in all. Rare parts (coupons, returns posted before their sale, tiers) read
    through the session, after what is written has been sent."""
    store = store_for(key, data.get("store_code"))
    verification.check_spend(data, key)  # fraud rules and the member's code, when spending
    currency = data["currency"]
    if currency != store.currency:
        raise Invalid(f"Store {store.code} sells in {store.currency}, not {currency}.",
                      errors={"currency": [f"Must be {store.currency} for this store."]})
    total = _money(data["total"], currency, "total")
    tax = _money(data["tax"], currency, "tax") if data.get("tax") is not None else 0
    adjustments = (_money(data["adjustments"], currency, "adjustments", signed=True)
                   if data.get("adjustments") is not None else 0)
    lines = _lines(data["lines"], currency)
    lookup = customer_lookup(data["customer"]) if data.get("customer") else None
    redeem = data.get("redeem_points") or 0
    sale = Sale(store.id, data["receipt_id"], request_hash(data),
                data["occurred_at"].astimezone(UTC), currency, total, total, utcnow(),
                data.get("coupon_codes") or [], tax, adjustments)
    with Sql() as sql:
        # Taken first (PostgreSQL; SQLite's writers are serialised already), so that a
        # return of this receipt posted meanwhile is either held and seen by the claim,
        # or waits and finds the sale.
        sql.lock(f"receipt:{store.id}:{sale.receipt_id}")
        claimed = sql.run(_CLAIM[lookup[0] if lookup else None],
                          {**sale.values(Sale.CLAIMED), **(lookup[1] if lookup else {})}).one()
        if claimed is None:
            return answer(_replay(Purchase, sale.request_hash, store_id=store.id,
                                  receipt_id=sale.receipt_id), store.code), False
        # After the claim, so that a receipt recorded before totals were checked is still
        # answered as it was; a new one that does not add up rolls its claim back.
        check_total(total, lines, tax, adjustments, currency)
        sale.id, sale.customer_id, held = claimed
        if redeem and sale.customer_id is None:  # the claim is rolled back with the request
            raise Invalid("Only a known member can redeem points.",
                          errors={"redeem_points": ["Give a customer that exists."]})
        ctx = _context(store, key, sale.occurred_at)
        sql.run_many(_LINES, [
            {"purchase_id": sale.id, "sku": line.sku, "category": line.category,
             "quantity": line.quantity, "unit_price": line.unit_price,
             "amount": line.amount, "earns": line.earns, "returned_quantity": 0}
            for line in lines])
        account = (accounts.load(sql, sale.customer_id, lots=bool(redeem))
                   if sale.customer_id is not None else None)
        stores_before = fraud.stores_before(sql, sale)
        checks: list[coupons.Check] = []
        if sale.codes:
            sql.send()  # coupons are read and used through the session
            checks = _use_coupons(sale, lines, store)
            coupons.redeem(checks, sale.id, sale.customer_id)
        if account is not None:
            if redeem:
                _redeem(sale, account, redeem, ctx)
            _award(sql, sale, account, lines, ctx, checks)
            accounts.save(sql, account)
        sale.coupons_applied = coupons.applied(checks, sale.currency)
        if not held and not (account is not None and ctx.tiers):  # all done
            _note_standing(sale, account, ctx)
            sql.run(_SALE_RESULT, {"sale_id": sale.id, **sale.values(Sale.RESULT)})
        else:  # what follows reads through the session what is written
            sql.run(_SALE_FIGURES, {"sale_id": sale.id, **sale.values(Sale.FIGURES)})
            sql.send()
            if held:  # returns posted before the sale
                _apply_held_returns(sql, sale, ctx)
                account = accounts.load(sql, sale.customer_id) if account else None
            if account is not None:
                _upgrade(account, ctx)
                accounts.save(sql, account)
            _note_standing(sale, account, ctx)
            sql.run(_SALE_STANDING, {"sale_id": sale.id, **sale.values(Sale.STANDING)})
    fraud.check_store_hopping(sale, stores_before)
    signals.purchase_recorded.send(current_app._get_current_object(), purchase=sale)
    return answer(sale, store.code), True


def _locked_purchase(purchase_id: int, key: Caller, *, anywhere: bool = False
                     ) -> tuple[Purchase, Store]:
    """The purchase, locked. A till's key reaches its own store's purchases, and with
    ``anywhere`` (returns with the program's ``returns_anywhere``) every store's."""
    purchase = db.session.scalar(select(Purchase).where(Purchase.id == purchase_id)
                                 .with_for_update()
                                 .execution_options(populate_existing=True))
    if purchase is None:
        raise NotFound(f"No purchase has the id {purchase_id}.")
    store = db.session.get(Store, purchase.store_id)
    if not anywhere and key.store is not None and key.store.id != store.id:
        raise Forbidden(f"This key belongs to store {key.store.code}; the purchase was "
                        f"made in {store.code}.")
    return purchase, store


def _stored_lines(purchase: Purchase) -> list[PurchaseLine]:
    return list(db.session.scalars(select(PurchaseLine)
                                   .where(PurchaseLine.purchase_id == purchase.id)
                                   .order_by(PurchaseLine.id)))


def claim_purchase(purchase_id: int, ref: dict[str, Any], key: Caller) -> dict[str, Any]:
    """Attach an anonymous purchase to a member, who then earns its points (less
    what was returned meanwhile)."""
    purchase, store = _locked_purchase(purchase_id, key)
    customer = find_customer(ref)
    if customer is None:
        raise NotFound("No customer matches.")
    if purchase.customer_id == customer.id:
        return answer(purchase, store.code)
    if purchase.customer_id is not None:
        raise Conflict("This purchase belongs to another customer already.")
    ctx = _context(store, key, purchase.occurred_at)
    purchase.customer_id = customer.id
    stored = _stored_lines(purchase)
    lines = [Line(pl.sku, pl.category, pl.quantity, pl.unit_price, pl.earns) for pl in stored]
    used = coupons.used_in(purchase.id)  # its points coupons add their bonus now
    fraction = _returned_fraction(purchase, stored)
    db.session.flush()
    with Sql() as sql:
        account = accounts.load(sql, customer.id, lots=bool(fraction))
        _award(sql, purchase, account, lines, ctx, [check for check, _ in used])
        if fraction:
            owed = to_points(purchase.points_earned * fraction, "round")
            done = ledger.claw_back(account, ctx.program, owed, purchase_id=purchase.id,
                                    return_row_id=None, occurred_at=utcnow(),
                                    actor=ctx.actor)
            purchase.points_reversed = done.reversed + done.uncollected
        accounts.save(sql, account)
        sql.send()
        _upgrade(account, ctx)
        accounts.save(sql, account)
    for check, redemption in used:  # _award noted each coupon's bonus on its check
        redemption.customer_id = customer.id
        redemption.bonus_points = check.details.get("bonus_points", 0)
    if used:
        purchase.coupons_applied = coupons.applied([check for check, _ in used],
                                                   purchase.currency)
    _note_standing(purchase, account, ctx)
    db.session.flush()
    signals.purchase_recorded.send(current_app._get_current_object(), purchase=purchase,
                                   claimed=True)
    return answer(purchase, store.code)


# --- returns ---------------------------------------------------------------------------


def return_answer(ret: PurchaseReturn, currency: str, codes: dict[int, str]
                  ) -> dict[str, Any]:
    """A return as the API answers it; ``codes`` gives the codes of its two stores."""
    return {
        "id": ret.id, "return_id": ret.return_id, "purchase_id": ret.purchase_id,
        "receipt_id": ret.receipt_id, "status": ret.status,
        "sale_store": codes.get(ret.store_id), "taken_at_store": codes.get(ret.taken_store_id),
        "taken_by_key": ret.taken_key_id, "created_at": ret.created_at,
        "applied_at": ret.applied_at, "expired_at": ret.expired_at, "currency": currency,
        "amount": to_amount(ret.returned_paid, currency),
        "points_reversed": ret.points_reversed, "points_restored": ret.points_restored,
        "points_uncollected": ret.points_uncollected, "balance": ret.balance_after,
        "note": ret.note,
    }


def _returned_fraction(purchase: Purchase, lines: list[PurchaseLine]) -> Fraction:
    """How much of the purchase has come back: by money paid, or by line value when
    nothing was paid in money (all points)."""
    if purchase.paid:
        return Fraction(purchase.returned_paid, purchase.paid)
    gross = sum(pl.amount for pl in lines)
    back = sum(pl.returned_quantity * pl.unit_price for pl in lines)
    if gross == 0:
        return Fraction(1 if all(pl.returned_quantity == pl.quantity for pl in lines) else 0)
    return Fraction(back, gross)


def _take_lines(lines: list[PurchaseLine], wanted: list[dict[str, Any]]) -> int:
    """Mark returned quantities; return the gross value returned. Checks everything
    before changing anything."""
    left = defaultdict(int)
    for pl in lines:
        left[pl.sku] += pl.quantity - pl.returned_quantity
    asked = defaultdict(int)
    for item in wanted:
        asked[item["sku"]] += item["quantity"]
    errors = {sku: [f"Only {left[sku]} left to return."] for sku, n in asked.items()
              if n > left[sku]}
    if errors:
        raise Invalid("More is returned than was bought: " + "; ".join(
            f"{sku}: {msgs[0].lower()}" for sku, msgs in errors.items()), errors=errors)
    gross = 0
    for pl in lines:
        take = min(asked[pl.sku], pl.quantity - pl.returned_quantity)
        pl.returned_quantity += take
        asked[pl.sku] -= take
        gross += take * pl.unit_price
    return gross


def _apply_return(sql: Sql, ret: PurchaseReturn, purchase: Purchase, ctx: Context) -> None:
    """Refund part or all of ``purchase``: take back the points it earned and give back
    those it redeemed, in proportion to what came back (cumulatively, so several
    partial returns never take back more than the whole)."""
    lines = _stored_lines(purchase)
    requested = ret.requested
    refundable = purchase.paid - purchase.returned_paid
    if not refundable and all(pl.returned_quantity == pl.quantity for pl in lines):
        raise Invalid("This purchase has been returned in full already.",
                      errors={"return_id": ["Nothing is left to return."]})
    if requested.get("lines"):
        gross_total = sum(pl.amount for pl in lines)
        gross = _take_lines(lines, requested["lines"])
        if all(pl.returned_quantity == pl.quantity for pl in lines):
            refund = refundable
        else:
            refund = min(refundable, round(Fraction(gross * purchase.paid, gross_total or 1)))
    elif requested.get("amount") is not None:
        refund = _money(requested["amount"], purchase.currency, "amount")
        if refund > refundable:
            raise Invalid(f"At most {refundable} (minor units) is left to refund.",
                          errors={"amount": ["More than is left to refund."]})
    else:
        for pl in lines:
            pl.returned_quantity = pl.quantity
        refund = refundable
    purchase.returned_paid += refund
    fraction = _returned_fraction(purchase, lines)
    ret.status, ret.purchase_id, ret.applied_at = "applied", purchase.id, utcnow()
    ret.returned_paid, ret.note = refund, None
    if purchase.customer_id is not None:
        owed = to_points(purchase.points_earned * fraction, "round") - purchase.points_reversed
        give = to_points(purchase.points_redeemed * fraction, "round") - purchase.points_restored
        account = accounts.load(sql, purchase.customer_id, lots=owed > 0)
        done = ledger.claw_back(account, ctx.program, owed, purchase_id=purchase.id,
                                return_row_id=ret.id, occurred_at=ret.applied_at,
                                actor=ctx.actor)
        if give > 0:
            ledger.restore(account, ctx.program, give,
                           accounts.load_redemption(sql, account, purchase.id),
                           purchase_id=purchase.id, return_row_id=ret.id,
                           occurred_at=ret.applied_at, actor=ctx.actor)
        accounts.save(sql, account)
        purchase.points_reversed += max(owed, 0)
        purchase.points_restored += max(give, 0)
        ret.points_reversed, ret.points_uncollected = done.reversed, done.uncollected
        ret.points_restored = max(give, 0)
        ret.balance_after = account.balance
    if fraction == 1:
        coupons.give_back(purchase.id, _local_day(utcnow(), ctx.store))
    signals.purchase_returned.send(current_app._get_current_object(), purchase=purchase,
                                   purchase_return=ret, full=fraction == 1)


def _apply_held_returns(sql: Sql, sale: Sale, ctx: Context) -> None:
    """Apply the returns posted before their sale (tills syncing out of order), in the
    order they came, and note on ``sale`` what they took back."""
    purchase = db.session.get(Purchase, sale.id, populate_existing=True)
    held = db.session.scalars(select(PurchaseReturn).where(
        PurchaseReturn.store_id == purchase.store_id,
        PurchaseReturn.receipt_id == purchase.receipt_id,
        PurchaseReturn.status.in_(("held", "expired"))).order_by(PurchaseReturn.id))
    for ret in held:
        expired = ret.status == "expired"
        try:
            _apply_return(sql, ret, purchase, ctx)
        except DomainError as e:  # checked before any change: nothing half-done
            ret.note = f"Could not be applied: {e.detail}"
        else:
            if expired:  # its alert stays for whoever looks into it
                ret.note = "Applied when its sale arrived, after it had expired."
    db.session.flush()
    sale.returned_paid, sale.points_reversed, sale.points_restored = (
        purchase.returned_paid, purchase.points_reversed, purchase.points_restored)


def _sale_store(key: Caller, store_code: str | None, anywhere: bool) -> Store | StoreRef:
    """The store a return names as its sale's (``POST /returns``): a till's own by
    default, and with ``returns_anywhere`` any store, for a till and for the shop."""
    if not anywhere or store_code is None or (key.store is not None
                                              and store_code == key.store.code):
        return store_for(key, store_code)
    store = db.session.scalar(select(Store).where(Store.code == store_code))
    if store is None:
        raise Invalid(f"No store has the code {store_code!r}.",
                      errors={"store_code": ["No such store."]})
    return store


def _taking_store(key: Caller, sale_store: Store | StoreRef, code: str | None,
                  anywhere: bool) -> Store | StoreRef:
    """The store taking the item back: a till's own; for the shop the store it names
    (an online one), else the sale's when online, else the online store selling in the
    sale's currency. Without ``returns_anywhere`` only the sale's own store takes it."""
    if key.store is not None:
        if code not in (None, key.store.code):
            raise Forbidden(f"This key belongs to store {key.store.code} and takes returns "
                            f"there, not at {code}.")
        taken: Store | StoreRef = key.store
    elif code is not None:
        taken = db.session.scalar(select(Store).where(Store.code == code))
        if taken is None:
            raise Invalid(f"No store has the code {code!r}.",
                          errors={"taken_at_store": ["No such store."]})
        access.check_store_channel(key, taken)
    elif getattr(sale_store, "channel", "store") == "online" or "admin" in key.scope_list:
        taken = sale_store
    else:
        taken = db.session.scalar(select(Store).where(
            Store.channel == "online", Store.currency == sale_store.currency)
            .order_by(Store.id).limit(1))
        if taken is None:
            raise Invalid(f"No online store sells in {sale_store.currency}: name the store "
                          "taking the item back.",
                          errors={"taken_at_store": ["Required for this sale."]})
    if taken.id != sale_store.id:
        if not anywhere:
            raise Forbidden(f"Returns are taken only where the sale was made "
                            f"({sale_store.code}): the program's returns_anywhere is off.")
    elif key.store is None and not anywhere:
        access.check_store_channel(key, sale_store)
    return taken


def _check_refund_currency(sale_store: Store | StoreRef, taken: Store | StoreRef,
                           currency: str | None) -> None:
    """The refund is in the sale's currency: a till refunding another currency, or a
    return naming one, is a 422."""
    if currency is not None and currency != sale_store.currency:
        raise Invalid(f"The sale was in {sale_store.currency}; a refund in {currency} "
                      "cannot be taken.",
                      errors={"currency": [f"Must be {sale_store.currency}, the sale's."]})
    if taken.currency != sale_store.currency:
        raise Invalid(f"Store {taken.code} refunds in {taken.currency}; the sale "
                      f"({sale_store.code}) was in {sale_store.currency}.",
                      errors={"currency": [f"The sale was in {sale_store.currency}; "
                                           f"{taken.code} cannot refund it."]})


def _codes(*stores: Store | StoreRef) -> dict[int, str]:
    return {s.id: s.code for s in stores}


def record_return(data: dict[str, Any], key: Caller,
                  purchase_id: int | None = None) -> tuple[dict[str, Any], int]:
    """Record a return of a purchase, by its id or by (store, receipt), taken back at
    the caller's store (any store with ``returns_anywhere``). Answers the return and its
    status code: 201 applied, 202 held, 200 a replay. The return id is the taking
    store's: unique per that store."""
    if data.get("lines") and data.get("amount") is not None:
        raise Invalid("Return by lines or by amount, not both.",
                      errors={"amount": ["Not with lines."]})
    anywhere = bool(settings.snapshot().program.returns_anywhere)
    if purchase_id is not None:
        purchase, store = _locked_purchase(purchase_id, key, anywhere=anywhere)
        receipt_id = purchase.receipt_id
        taken = _taking_store(key, store, data.get("taken_at_store"), anywhere)
    else:
        store = _sale_store(key, data.get("store_code"), anywhere)
        taken = _taking_store(key, store, data.get("taken_at_store"), anywhere)
        receipt_id = data["receipt_id"]
        lock(f"receipt:{store.id}:{receipt_id}")  # against its purchase racing it
        purchase = db.session.scalar(select(Purchase).where(
            Purchase.store_id == store.id, Purchase.receipt_id == receipt_id)
            .with_for_update())
    _check_refund_currency(store, taken, data.get("currency"))
    requested = {"lines": data.get("lines"), "amount": data.get("amount")}
    if requested["amount"] is not None:
        _money(requested["amount"], store.currency, "amount")
    # The same return posted again must hash the same as before returns_anywhere: the
    # sale's store is part of it only when another store takes the item back.
    named = {"receipt_id": receipt_id, **requested}
    if taken.id != store.id:
        named["sale_store_id"] = store.id
    digest = request_hash(named)
    codes = _codes(store, taken)
    ret = _claim(PurchaseReturn, ("taken_store_id", "return_id"), {
        "store_id": store.id, "taken_store_id": taken.id, "taken_key_id": key.id,
        "receipt_id": receipt_id, "return_id": data["return_id"],
        "request_hash": digest, "status": "held", "requested": requested,
        "created_at": utcnow()})
    if ret is None:
        earlier = _replay(PurchaseReturn, digest, taken_store_id=taken.id,
                          return_id=data["return_id"])
        return return_answer(earlier, store.currency, codes), 200
    if purchase is None:
        db.session.flush()
        return return_answer(ret, store.currency, codes), 202
    with Sql() as sql:
        _apply_return(sql, ret, purchase, _context(store, key, purchase.occurred_at))
    db.session.flush()
    return return_answer(ret, store.currency, codes), 201
