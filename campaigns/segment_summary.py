"""A segment rule in plain language ("spent at least 400.00 USD in the last 30 days and
has not bought in 14 days") and as the SQL it compiles to — the two readings a marketer
and an administrator check against each other, so that the screen and the query never
read a group differently (Mautic #2304, #3239).

Groups are written with their connective (``and`` / ``or``), nested groups in
parentheses, ``not`` as "not (...)". The words come from the checked rule (money parsed
in the program's currency), so a rule that does not check has no summary: its
``Invalid`` error names the bad node, as for saving.
"""

from __future__ import annotations

import calendar
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from campaigns.segment_rules import check, compile_rule
from crm.db import db
from crm.models import Customer
from crm.money import to_amount

COMPARED = {"eq": "exactly", "ne": "other than", "gt": "more than", "gte": "at least",
            "lt": "less than", "lte": "at most"}


def summarize(rule: Any, currency: str) -> str:
    """The rule in words; raises ``Invalid`` (naming the node) for a rule that does not
    check."""
    return _words(check(rule, currency), currency, top=True)


def compiled_sql(rule: Any, currency: str, now: datetime, dialect: Any = None) -> str:
    """The count query of the rule as the database receives it, values inlined, for
    administrators to read (never executed as text)."""
    where = compile_rule(check(rule, currency), now)
    query = select(func.count()).select_from(Customer).where(where)
    compiled = query.compile(dialect=dialect or db.engine.dialect,
                             compile_kwargs={"literal_binds": True})
    return str(compiled)


def _words(node: dict[str, Any], currency: str, top: bool = False) -> str:
    for group, joiner in (("all", " and "), ("any", " or ")):
        if group in node:
            parts = [_words(n, currency) for n in node[group]]
            text = joiner.join(parts)
            return text if top or len(parts) == 1 else f"({text})"
    if "not" in node:
        inner = _words(node["not"], currency, top=True)
        return f"not ({inner})"
    return _condition(node, currency)


def _listed(values: list[Any], last: str = "or") -> str:
    texts = [str(v) for v in values]
    return texts[0] if len(texts) == 1 else f"{', '.join(texts[:-1])} {last} {texts[-1]}"


def _compared(op: str, value: Any, show: Any = str) -> str:
    """``at least 5``, ``between 3 and 7``, ``3, 5 or 7``."""
    if op == "between":
        return f"between {show(value[0])} and {show(value[1])}"
    if op == "in":
        return _listed([show(v) for v in value])
    return f"{COMPARED[op]} {show(value)}"


def _window(node: dict[str, Any], default: str = "") -> str:
    days = node.get("window_days")
    return f" in the last {_days(days)}" if days else default


def _days(n: int) -> str:
    return f"{n} day" if n == 1 else f"{n} days"


def _count(op: str, value: Any, one: str, many: str) -> str:
    """``at least 3 purchases``: the noun agrees with the last figure."""
    last = value[-1] if isinstance(value, list) else value
    return f"{_compared(op, value)} {one if last == 1 else many}"


def _month(n: int) -> str:
    return calendar.month_name[n]


def _condition(node: dict[str, Any], currency: str) -> str:
    name, op, value = node["field"], node["op"], node["value"]

    def money(minor: int) -> str:
        return f"{to_amount(minor, currency)} {currency}"

    def plural(one: str, many: str) -> str:
        return _count(op, value, one, many)

    if name == "tier":
        names = value if op == "in" else [value]
        return f"is {'not ' if op == 'ne' else ''}in tier {_listed(names)}"
    if name == "points_balance":
        return f"has a balance of {plural('point', 'points')}"
    if name == "points_expiring":
        return (f"has {plural('point', 'points')} expiring in the next "
                f"{_days(node['window_days'])}")
    if name == "spend":
        return f"spent {_compared(op, value, money)}{_window(node, ' in all')}"
    if name == "purchase_count":
        return f"made {plural('purchase', 'purchases')}{_window(node, ' in all')}"
    if name == "days_since_last_purchase":
        return _recency(op, value)
    if name in ("bought_sku", "bought_category", "store"):
        values = value if op == "in" else [value]
        what = {"bought_sku": "bought SKU", "bought_category": "bought in category",
                "store": "bought at store"}[name]
        return f"{what} {_listed(values)}{_window(node)}"
    if name == "channel":
        return {"online": "bought online only", "store": "bought in stores only",
                "both": "bought both online and in stores"}[value]
    if name == "birthday_month":
        if op in ("eq", "in"):
            months = [_month(v) for v in (value if op == "in" else [value])]
            return f"has a birthday in {_listed(months)}"
        if op == "ne":
            return f"has a birthday outside {_month(value)}"
        return f"has a birthday month {_compared(op, value, _month)}"
    if name == "age":
        return f"is {plural('year', 'years')} old"
    if name == "city":
        if op == "ne":
            return f"does not live in {value}"
        return f"lives in {_listed(value if op == 'in' else [value])}"
    if name == "created_at":
        day = lambda v: v.date().isoformat() if v == v.replace(  # noqa: E731
            hour=0, minute=0, second=0, microsecond=0) else v.isoformat()
        joined = {"gt": "after", "gte": "on or after", "lt": "before", "lte": "on or before"}
        if op == "between":
            return f"joined between {day(value[0])} and {day(value[1])}"
        return f"joined {joined[op]} {day(value)}"
    if name in ("consent_sms", "consent_email"):
        channel = "SMS" if name == "consent_sms" else "email"
        return f"agreed to {channel}" if value else f"has not agreed to {channel}"
    if name == "nps_score":
        return f"gave a latest NPS score of {_compared(op, value)}"
    if name in ("rfm_r", "rfm_f", "rfm_m"):
        score = {"rfm_r": "recency", "rfm_f": "frequency", "rfm_m": "monetary"}[name]
        return f"has an RFM {score} score of {_compared(op, value)}"
    if name == "coupon_redeemed":
        did = "redeemed a coupon" if value else "has not redeemed a coupon"
        return f"{did}{_window(node)}"
    raise AssertionError(f"no words for {name}")  # every field of FIELDS has a line above


def _recency(op: str, value: Any) -> str:
    """The grammar's reading of ``days_since_last_purchase`` (segment_rules): ``gte 14``
    is "bought, and nothing in the last 14 days"."""
    if op == "gte":
        return f"has not bought in {_days(value)}"
    if op == "gt":
        return f"has not bought in {_days(value + 1)}"
    if op in ("lte", "lt"):
        return f"last bought {COMPARED[op]} {_days(value)} ago"
    if op == "between":
        return f"last bought between {value[0]} and {_days(value[1])} ago"
    if op == "in":
        return f"last bought {_listed(value)} days ago"
    return (f"last bought exactly {_days(value)} ago" if op == "eq"
            else f"did not last buy exactly {_days(value)} ago")
