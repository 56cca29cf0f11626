"""A segment rule in words and in SQL (campaigns.segment_summary), and counts bounded in
time (campaigns.segment_count) on real data."""

from __future__ import annotations

import pytest
from sqlalchemy import insert, literal, select

from campaigns import segments
from campaigns.segment_count import CountStopped, CountTimeout, Stopper, bounded_preview
from campaigns.segment_rules import FIELDS
from campaigns.segment_summary import compiled_sql, summarize
from crm.db import db, utcnow
from crm.demo import load_demo
from crm.errors import Invalid
from crm.models import Customer
from loyalty.models import Product, PurchaseLine

EXAMPLE = {"all": [{"field": "spend", "op": "gte", "value": "400.00", "window_days": 30},
                   {"field": "days_since_last_purchase", "op": "gte", "value": 14}]}


def test_the_api_example_in_words():
    assert summarize(EXAMPLE, "USD") == (
        "spent at least 400.00 USD in the last 30 days and has not bought in 14 days")


def test_groups_read_as_they_are_nested():
    rule = {"all": [
        {"field": "tier", "op": "in", "value": ["Gold", "Silver"]},
        {"any": [{"field": "consent_sms", "op": "eq", "value": True},
                 {"not": {"field": "city", "op": "eq", "value": "Paris"}}]},
        {"not": {"any": [{"field": "bought_category", "op": "eq", "value": "shoes",
                          "window_days": 90},
                         {"field": "purchase_count", "op": "between", "value": [1, 3]}]}}]}
    assert summarize(rule, "EUR") == (
        "is in tier Gold or Silver and (agreed to SMS or not (lives in Paris)) and "
        "not (bought in category shoes in the last 90 days or made between 1 and 3 "
        "purchases in all)")


@pytest.mark.parametrize("condition, words", [
    ({"field": "points_balance", "op": "gt", "value": 1}, "has a balance of more than 1 point"),
    ({"field": "points_expiring", "op": "gte", "value": 100, "window_days": 7},
     "has at least 100 points expiring in the next 7 days"),
    ({"field": "spend", "op": "between", "value": ["10", "20.5"]},
     "spent between 10.00 EUR and 20.50 EUR in all"),
    ({"field": "days_since_last_purchase", "op": "lte", "value": 7},
     "last bought at most 7 days ago"),
    ({"field": "bought_sku", "op": "in", "value": ["A1", "B2", "C3"]},
     "bought SKU A1, B2 or C3"),
    ({"field": "store", "op": "eq", "value": "NYC01", "window_days": 1},
     "bought at store NYC01 in the last 1 day"),
    ({"field": "channel", "op": "eq", "value": "both"}, "bought both online and in stores"),
    ({"field": "birthday_month", "op": "in", "value": [3, 4]}, "has a birthday in March or April"),
    ({"field": "age", "op": "lt", "value": 30}, "is less than 30 years old"),
    ({"field": "created_at", "op": "gte", "value": "2026-01-01"}, "joined on or after 2026-01-01"),
    ({"field": "consent_email", "op": "eq", "value": False}, "has not agreed to email"),
    ({"field": "nps_score", "op": "lte", "value": 6}, "gave a latest NPS score of at most 6"),
    ({"field": "rfm_m", "op": "eq", "value": 5}, "has an RFM monetary score of exactly 5"),
    ({"field": "coupon_redeemed", "op": "eq", "value": True, "window_days": 30},
     "redeemed a coupon in the last 30 days"),
])
def test_each_field_in_words(condition, words):
    assert summarize(condition, "EUR") == words


def test_every_field_and_operator_has_words():
    samples = {"int": 3, "money": "5.00", "bool": True, "text": "online",
               "datetime": "2026-02-01"}
    for name, spec in FIELDS.items():
        for op in spec.ops:
            value = samples[spec.kind]
            if op == "in":
                value = [value]
            elif op == "between":
                value = [value, value]
            rule = {"field": name, "op": op, "value": value}
            if name == "birthday_month":
                rule["value"] = [3] if op == "in" else [3, 4] if op == "between" else 3
            if spec.window:
                rule["window_days"] = 10
            assert summarize(rule, "USD"), rule


def test_a_bad_rule_has_no_words_but_the_node_named():
    with pytest.raises(Invalid) as e:
        summarize({"all": [EXAMPLE["all"][0], {"field": "age", "op": "gte", "value": "x"}]},
                  "USD")
    assert e.value.extra["errors"] == {"rule.all[1].value": ["A whole number."]}


def test_the_compiled_sql_is_the_count_query(factory):
    sql = compiled_sql(EXAMPLE, "USD", utcnow())
    assert sql.startswith("SELECT count(*)") and "FROM customers" in sql
    assert "40000" in sql and "purchases" in sql  # 400.00 in minor units, inlined


def test_known_categories_are_the_catalogue_s_and_the_sales_lines(factory):
    load_demo(40)
    db.session.add(Product(sku="NEW-1", name="Kite", category="outdoor toys", price=100,
                           currency="USD"))
    db.session.commit()
    sold = set(db.session.scalars(select(PurchaseLine.category).distinct()
                                  .where(PurchaseLine.category.is_not(None))))
    catalogue = set(db.session.scalars(select(Product.category).distinct()))
    assert len(sold) > 1 and "outdoor toys" in catalogue
    assert segments.known_categories() == sorted(sold | catalogue)
    assert segments.known_categories(limit=2) == sorted(sold | catalogue)[:2]


def _many_customers(n: int) -> None:
    """``n`` customers in one INSERT ... SELECT (a recursive series: no Python loop)."""
    series = select(literal(1).label("n")).cte("series", recursive=True)
    series = series.union_all(select(series.c.n + 1).where(series.c.n < n))
    now = utcnow()
    db.session.execute(insert(Customer).from_select(
        ["first_name", "city", "consent_sms", "consent_email", "created_at", "updated_at"],
        select(literal("Many"), literal("Lyon"), literal(True), literal(False),
               literal(now, Customer.created_at.type), literal(now, Customer.updated_at.type))
        .select_from(series)))
    db.session.commit()


def test_a_count_past_its_time_or_asked_to_stop_stops_and_leaves_nothing_open(factory):
    _many_customers(100_000)
    rule = {"any": [{"field": "city", "op": "eq", "value": "Lyon"},
                    {"field": "age", "op": "gte", "value": 30},
                    {"field": "points_balance", "op": "eq", "value": 0}]}
    with pytest.raises(CountTimeout):
        bounded_preview(rule, 0.001)
    stopper = Stopper()
    stopper.stop()
    with pytest.raises(CountStopped):
        bounded_preview(rule, 60, stopper)
    # The session is usable again, and the bound was that transaction's only.
    found = bounded_preview(rule, 60)
    assert found["count"] == 100_000 and len(found["sample"]) == segments.SAMPLE
    assert segments.count(rule) == 100_000
