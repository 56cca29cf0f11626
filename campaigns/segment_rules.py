"""Segment rules: a JSON tree (``all``, ``any``, ``not``) of conditions
``{"field", "op", "value", "window_days"?}`` (API.md), checked node by node and compiled
to one SQL condition on ``customers`` — set-based subqueries, never a loop over
customers in Python.

Activity conditions (spend, purchase count, recency, what was bought, where) look at
purchases; ``window_days`` counts back from now. A customer with no value for a field
(no purchase, no birthday, no RFM score) does not match a comparison on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, false, func, not_, or_, select, true
from sqlalchemy.sql.elements import ColumnElement

from campaigns.models import CustomerRfm, Survey, SurveyResponse
from crm.errors import Invalid
from crm.models import Customer, Store
from crm.money import InvalidAmount, to_minor
from loyalty.models import Account, CouponRedemption, Lot, Purchase, PurchaseLine, Tier

ORDERED = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "between")  # every op
EQUALITY = ("eq", "ne", "in")
MAX_DEPTH, MAX_NODES = 12, 200
MAX_LIST, MAX_VALUES = 100, 1000  # values in one `in` list, and in a whole rule
RANGED = ("age", "days_since_last_purchase")  # each value of their `in` is a range
MAX_RANGED_LIST = 20
MAX_DAYS = 36_500  # day counts beyond a century are mistakes (and overflow dates)
MAX_POINTS = 10**12


@dataclass(frozen=True)
class Field:
    kind: str  # int, money, bool, text, datetime
    ops: tuple[str, ...]
    window: bool = False  # takes window_days
    low: int | None = None
    high: int | None = None


FIELDS: dict[str, Field] = {
    "tier": Field("text", EQUALITY),
    "points_balance": Field("int", ORDERED, low=-MAX_POINTS, high=MAX_POINTS),
    "points_expiring": Field("int", ORDERED, window=True, low=-MAX_POINTS, high=MAX_POINTS),
    "spend": Field("money", ORDERED, window=True),
    "purchase_count": Field("int", ORDERED, window=True, low=0, high=MAX_POINTS),
    "days_since_last_purchase": Field("int", ORDERED, low=0, high=MAX_DAYS),
    "bought_sku": Field("text", ("eq", "in"), window=True),
    "bought_category": Field("text", ("eq", "in"), window=True),
    "store": Field("text", ("eq", "in"), window=True),
    "channel": Field("text", ("eq",)),
    "birthday_month": Field("int", ORDERED, low=1, high=12),
    "age": Field("int", ORDERED, low=0, high=150),
    "city": Field("text", EQUALITY),
    "created_at": Field("datetime", ("gt", "gte", "lt", "lte", "between")),
    "consent_sms": Field("bool", ("eq",)),
    "consent_email": Field("bool", ("eq",)),
    "nps_score": Field("int", ORDERED, low=0, high=10),
    "rfm_r": Field("int", ORDERED, low=1, high=5),
    "rfm_f": Field("int", ORDERED, low=1, high=5),
    "rfm_m": Field("int", ORDERED, low=1, high=5),
    "coupon_redeemed": Field("bool", ("eq",), window=True),
}
CHANNELS = ("online", "store", "both")


# -- checking --------------------------------------------------------------------------

def check(rule: Any, currency: str) -> dict[str, Any]:
    """The rule with values parsed (money to minor units, times to datetimes), or an
    Invalid error whose ``errors`` name the bad node (``rule.all[1].value``). Its size
    is bounded (nodes, depth, values) so that its query stays within what databases
    take."""
    count = [0, 0]  # nodes, values
    return _check(rule, "rule", 0, count, currency)


def _bad(path: str, message: str) -> Invalid:
    return Invalid(f"{path}: {message}", errors={path: [message]})


def _check(node: Any, path: str, depth: int, count: list[int], currency: str) -> dict:
    count[0] += 1
    if count[0] > MAX_NODES or depth > MAX_DEPTH:
        raise _bad(path, f"A rule has at most {MAX_NODES} nodes, {MAX_DEPTH} levels deep.")
    if not isinstance(node, dict):
        raise _bad(path, "Each node is an object: all, any, not, or a condition.")
    for group in ("all", "any"):
        if group in node:
            if set(node) != {group}:
                raise _bad(path, f"'{group}' stands alone in its node.")
            items = node[group]
            if not isinstance(items, list) or not items:
                raise _bad(f"{path}.{group}", "A non-empty list of rules.")
            return {group: [_check(item, f"{path}.{group}[{i}]", depth + 1, count, currency)
                            for i, item in enumerate(items)]}
    if "not" in node:
        if set(node) != {"not"}:
            raise _bad(path, "'not' stands alone in its node.")
        return {"not": _check(node["not"], f"{path}.not", depth + 1, count, currency)}
    checked = _condition(node, path, currency)
    value = checked["value"]
    count[1] += len(value) if isinstance(value, list) else 1
    if count[1] > MAX_VALUES:
        raise _bad(path, f"A rule compares at most {MAX_VALUES} values in all.")
    return checked


def _condition(node: dict[str, Any], path: str, currency: str) -> dict[str, Any]:
    unknown = set(node) - {"field", "op", "value", "window_days"}
    if unknown:
        raise _bad(path, f"Unknown key(s): {', '.join(sorted(map(str, unknown)))}.")
    name = node.get("field")
    if not isinstance(name, str) or name not in FIELDS:
        raise _bad(f"{path}.field", f"One of: {', '.join(FIELDS)}.")
    spec = FIELDS[name]
    op = node.get("op")
    if op not in spec.ops:
        raise _bad(f"{path}.op", f"For {name}, one of: {', '.join(spec.ops)}.")
    window = node.get("window_days")
    if window is not None:
        if not spec.window:
            raise _bad(f"{path}.window_days", f"{name} takes no window_days.")
        if not isinstance(window, int) or isinstance(window, bool) or not 1 <= window <= 3650:
            raise _bad(f"{path}.window_days", "A whole number of days from 1 to 3650.")
    if name == "points_expiring" and window is None:
        raise _bad(f"{path}.window_days", "points_expiring needs window_days.")
    if "value" not in node:
        raise _bad(f"{path}.value", "Missing.")
    raw = node["value"]
    vpath = f"{path}.value"
    if op == "in":
        most = MAX_RANGED_LIST if name in RANGED else MAX_LIST
        if not isinstance(raw, list) or not 1 <= len(raw) <= most:
            raise _bad(vpath, f"A list of 1 to {most} values.")
        value: Any = [_value(v, spec, name, f"{vpath}[{i}]", currency)
                      for i, v in enumerate(raw)]
    elif op == "between":
        if not isinstance(raw, list) or len(raw) != 2:
            raise _bad(vpath, "A list [low, high].")
        value = [_value(v, spec, name, f"{vpath}[{i}]", currency) for i, v in enumerate(raw)]
        if value[0] > value[1]:
            raise _bad(vpath, "low is above high.")
    else:
        value = _value(raw, spec, name, vpath, currency)
    return {"field": name, "op": op, "value": value, "window_days": window}


def _value(raw: Any, spec: Field, name: str, path: str, currency: str) -> Any:
    if spec.kind == "bool":
        if not isinstance(raw, bool):
            raise _bad(path, "true or false.")
        return raw
    if spec.kind == "int":
        if not isinstance(raw, int) or isinstance(raw, bool):
            raise _bad(path, "A whole number.")
        if (spec.low is not None and raw < spec.low) or (spec.high is not None
                                                         and raw > spec.high):
            raise _bad(path, f"From {spec.low} to {spec.high}.")
        return raw
    if spec.kind == "money":
        try:
            return to_minor(raw, currency)
        except InvalidAmount as e:
            raise _bad(path, f"{e} ({currency}, such as \"400.00\")") from None
    if spec.kind == "datetime":
        try:
            moment = datetime.fromisoformat(raw) if isinstance(raw, str) else None
        except ValueError:
            moment = None
        if moment is None or not 2000 <= moment.year <= 2100:
            raise _bad(path, "A date or time in ISO 8601, such as 2026-01-31.")
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # naive: UTC
    if not isinstance(raw, str) or not 1 <= len(raw) <= 100:
        raise _bad(path, "A text of 1 to 100 characters.")
    if name == "channel" and raw not in CHANNELS:
        raise _bad(path, f"One of: {', '.join(CHANNELS)}.")
    return raw


# -- compiling -------------------------------------------------------------------------

def compile_rule(rule: dict[str, Any], now: datetime) -> ColumnElement[bool]:
    """A checked rule as a condition on ``customers`` (live records only)."""
    live = and_(Customer.merged_into_id.is_(None), Customer.erased_at.is_(None))
    return and_(live, _compile(rule, now))


def _compile(node: dict[str, Any], now: datetime) -> ColumnElement[bool]:
    if "all" in node:
        return and_(true(), *(_compile(n, now) for n in node["all"]))
    if "any" in node:
        return or_(false(), *(_compile(n, now) for n in node["any"]))
    if "not" in node:
        return not_(_compile(node["not"], now))
    return BUILDERS[node["field"]](node, now)


def compare(column: Any, op: str, value: Any) -> ColumnElement[bool]:
    if op == "in":
        return column.in_(value)
    if op == "between":
        return column.between(value[0], value[1])
    return {"eq": column == value, "ne": column != value, "gt": column > value,
            "gte": column >= value, "lt": column < value, "lte": column <= value}[op]


def _since(node: dict[str, Any], now: datetime) -> datetime | None:
    days = node.get("window_days")
    return now - timedelta(days=days) if days else None


def _purchases(node: dict[str, Any], now: datetime) -> Any:
    """The purchases a condition looks at: of known customers, within its window."""
    where = [Purchase.customer_id.is_not(None)]
    since = _since(node, now)
    if since is not None:
        where.append(Purchase.occurred_at >= since)
    return where


def _customers_where(*where: Any) -> ColumnElement[bool]:
    return Customer.id.in_(select(Purchase.customer_id).where(*where))


def _aggregate(measure: Callable[[], Any]) -> Callable:
    """Sum or count over purchases in the window, compared; customers with none have 0."""
    def build(node: dict[str, Any], now: datetime) -> ColumnElement[bool]:
        having = compare(measure(), node["op"], node["value"])
        matched = Customer.id.in_(select(Purchase.customer_id).where(*_purchases(node, now))
                                  .group_by(Purchase.customer_id).having(having))
        if _zero_passes(node):
            bought = select(Purchase.customer_id).where(*_purchases(node, now))
            return or_(matched, Customer.id.not_in(bought))
        return matched
    return build


def _zero_passes(node: dict[str, Any]) -> bool:
    op, value = node["op"], node["value"]
    checks = {"eq": lambda: value == 0, "ne": lambda: value != 0, "gt": lambda: value < 0,
              "gte": lambda: value <= 0, "lt": lambda: value > 0, "lte": lambda: value >= 0,
              "in": lambda: 0 in value, "between": lambda: value[0] <= 0 <= value[1]}
    return checks[op]()


def _days_since_last(node: dict[str, Any], now: datetime) -> ColumnElement[bool]:
    """Whole days since the last purchase (14.5 days ago is 14), as times: ``gte 14`` is
    "bought, and nothing after now - 14 days" — an anti-join on the recent purchases,
    not an aggregate over all of them; ``lte 14`` is "bought after now - 15 days"."""
    op, value = node["op"], node["value"]

    def before(days: int) -> datetime:
        return now - timedelta(days=days)

    def bought(*where: Any) -> ColumnElement[bool]:
        return exists().where(Purchase.customer_id == Customer.id, *where)

    def at_least(days: int) -> ColumnElement[bool]:
        return and_(bought(), not_(bought(Purchase.occurred_at > before(days))))

    def at_most(days: int) -> ColumnElement[bool]:
        return bought(Purchase.occurred_at > before(days + 1))

    if op in ("gte", "gt", "lte", "lt"):
        return {"gte": lambda: at_least(value), "gt": lambda: at_least(value + 1),
                "lte": lambda: at_most(value), "lt": lambda: at_most(value - 1)}[op]()
    last = func.max(Purchase.occurred_at)

    def aged(days: int) -> ColumnElement[bool]:  # exactly this many days ago
        return and_(last <= before(days), last > before(days + 1))

    having = {"eq": lambda: aged(value), "ne": lambda: not_(aged(value)),
              "between": lambda: and_(last <= before(value[0]), last > before(value[1] + 1)),
              "in": lambda: or_(*(aged(v) for v in value))}[op]()
    return Customer.id.in_(select(Purchase.customer_id)
                           .where(Purchase.customer_id.is_not(None))
                           .group_by(Purchase.customer_id).having(having))


def _bought(column: Any) -> Callable:
    def build(node: dict[str, Any], now: datetime) -> ColumnElement[bool]:
        values = node["value"] if node["op"] == "in" else [node["value"]]
        return Customer.id.in_(
            select(Purchase.customer_id).join(PurchaseLine,
                                              PurchaseLine.purchase_id == Purchase.id)
            .where(*_purchases(node, now), column.in_(values)))
    return build


def _store(node: dict[str, Any], now: datetime) -> ColumnElement[bool]:
    values = node["value"] if node["op"] == "in" else [node["value"]]
    return _customers_where(*_purchases(node, now), Purchase.store_id.in_(
        select(Store.id).where(Store.code.in_(values))))


def _channel(node: dict[str, Any], now: datetime) -> ColumnElement[bool]:
    def bought_at(channel: str) -> ColumnElement[bool]:
        return _customers_where(Purchase.customer_id.is_not(None), Purchase.store_id.in_(
            select(Store.id).where(Store.channel == channel)))
    online, in_store = bought_at("online"), bought_at("store")
    return {"online": and_(online, not_(in_store)), "store": and_(in_store, not_(online)),
            "both": and_(online, in_store)}[node["value"]]


def _age(node: dict[str, Any], now: datetime) -> ColumnElement[bool]:
    """Age in whole years, from the birth year and month kept in the clear (the birthday
    itself is sealed): ``age >= 30`` is "born in or before this month 30 years ago", as
    if everyone were born on the first of their month."""
    today = now.date()

    def born(years_ago: int) -> int:  # this month, years ago, as a count of months
        return (today.year - years_ago) * 12 + today.month

    op, value = node["op"], node["value"]
    month = Customer.birth_year * 12 + Customer.birth_month

    def aged(v: int) -> ColumnElement[bool]:  # exactly v years old
        return and_(month <= born(v), month > born(v + 1))

    built = {"gte": lambda: month <= born(value), "gt": lambda: month <= born(value + 1),
             "lte": lambda: month > born(value + 1), "lt": lambda: month > born(value),
             "eq": lambda: aged(value), "ne": lambda: not_(aged(value)),
             "between": lambda: and_(month <= born(value[0]), month > born(value[1] + 1)),
             "in": lambda: or_(*(aged(v) for v in value))}[op]()
    return and_(Customer.birth_year.is_not(None), Customer.birth_month.is_not(None), built)


def _column(column: Any, transform: Callable[[Any], Any] = lambda c: c) -> Callable:
    def build(node: dict[str, Any], now: datetime) -> ColumnElement[bool]:
        return and_(column.is_not(None), compare(transform(column), node["op"], node["value"]))
    return build


def _city(node: dict[str, Any], now: datetime) -> ColumnElement[bool]:
    value = node["value"]
    lowered = [v.lower() for v in value] if isinstance(value, list) else value.lower()
    return and_(Customer.city.is_not(None),
                compare(func.lower(Customer.city), node["op"], lowered))


def _tier(node: dict[str, Any], now: datetime) -> ColumnElement[bool]:
    names = node["value"] if node["op"] == "in" else [node["value"]]
    holders = Customer.id.in_(select(Account.customer_id).join(Tier, Tier.id == Account.tier_id)
                              .where(Tier.name.in_(names)))
    return not_(holders) if node["op"] == "ne" else holders


def _account(column: Any) -> Callable:
    def build(node: dict[str, Any], now: datetime) -> ColumnElement[bool]:
        matched = Customer.id.in_(select(Account.customer_id).where(
            compare(column, node["op"], node["value"])))
        if _zero_passes(node):  # no account: nothing on it
            return or_(matched, Customer.id.not_in(select(Account.customer_id)))
        return matched
    return build


def _expiring(node: dict[str, Any], now: datetime) -> ColumnElement[bool]:
    soon = now + timedelta(days=node["window_days"])
    having = compare(func.sum(Lot.remaining), node["op"], node["value"])
    matched = Customer.id.in_(
        select(Lot.customer_id).where(Lot.released.is_(True), Lot.remaining > 0,
                                      Lot.expires_at > now, Lot.expires_at <= soon)
        .group_by(Lot.customer_id).having(having))
    if _zero_passes(node):
        expiring = select(Lot.customer_id).where(Lot.released.is_(True), Lot.remaining > 0,
                                                 Lot.expires_at > now, Lot.expires_at <= soon)
        return or_(matched, Customer.id.not_in(expiring))
    return matched


def _nps(node: dict[str, Any], now: datetime) -> ColumnElement[bool]:
    """The score of the person's latest NPS answer."""
    latest = (select(func.max(SurveyResponse.id))
              .join(Survey, Survey.id == SurveyResponse.survey_id)
              .where(Survey.kind == "nps").group_by(SurveyResponse.customer_id))
    return Customer.id.in_(select(SurveyResponse.customer_id).where(
        SurveyResponse.id.in_(latest), compare(SurveyResponse.score, node["op"], node["value"])))


def _rfm(column: Any) -> Callable:
    def build(node: dict[str, Any], now: datetime) -> ColumnElement[bool]:
        return Customer.id.in_(select(CustomerRfm.customer_id).where(
            compare(column, node["op"], node["value"])))
    return build


def _coupon(node: dict[str, Any], now: datetime) -> ColumnElement[bool]:
    where = [CouponRedemption.customer_id.is_not(None), CouponRedemption.reversed_at.is_(None)]
    since = _since(node, now)
    if since is not None:
        where.append(CouponRedemption.created_at >= since)
    used = Customer.id.in_(select(CouponRedemption.customer_id).where(*where))
    return used if node["value"] else not_(used)


def _consent(column: Any) -> Callable:
    def build(node: dict[str, Any], now: datetime) -> ColumnElement[bool]:
        return column.is_(True) if node["value"] else column.is_(False)
    return build


BUILDERS: dict[str, Callable[[dict[str, Any], datetime], ColumnElement[bool]]] = {
    "tier": _tier,
    "points_balance": _account(Account.balance),
    "points_expiring": _expiring,
    "spend": _aggregate(lambda: func.sum(Purchase.paid)),
    "purchase_count": _aggregate(lambda: func.count(Purchase.id)),
    "days_since_last_purchase": _days_since_last,
    "bought_sku": _bought(PurchaseLine.sku),
    "bought_category": _bought(PurchaseLine.category),
    "store": _store,
    "channel": _channel,
    "birthday_month": _column(Customer.birth_month),
    "age": _age,
    "city": _city,
    "created_at": _column(Customer.created_at),
    "consent_sms": _consent(Customer.consent_sms),
    "consent_email": _consent(Customer.consent_email),
    "nps_score": _nps,
    "rfm_r": _rfm(CustomerRfm.r),
    "rfm_f": _rfm(CustomerRfm.f),
    "rfm_m": _rfm(CustomerRfm.m),
    "coupon_redeemed": _coupon,
}
