"""Segments: rules checked node by node, compiled to one SQL query, previewed, and used
as a customer filter; RFM scores and co-purchases from the refresh job."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import event, select

from campaigns import segments
from campaigns.models import CustomerRfm
from crm.db import db
from tests.campaigns.conftest import PUBLIC
from tests.helpers import Till, ago


@pytest.fixture
def marketing(factory):
    return factory.headers("marketing")


def _line(amount: str, sku: str = "SKU-1", category: str = "food") -> dict:
    return {"sku": sku, "category": category, "quantity": 1, "unit_price": amount}


def buy(till: Till, person, amount: str = "100.00", days_ago: float = 1, **line) -> None:
    till.buy({"id": person.id}, amount, lines=[_line(amount, **line)],
             occurred_at=ago(days=days_ago))


def matching(rule) -> set[int]:
    db.session.rollback()
    return set(db.session.scalars(segments.members(segments.checked(rule))))


def test_the_example_rule_of_api_md(client, till, member, marketing):
    big_quiet, big_recent, small = member(), member(), member()
    member()  # never bought
    buy(till, big_quiet, "450.00", days_ago=20)
    buy(till, big_recent, "300.00", days_ago=20)
    buy(till, big_recent, "200.00", days_ago=5)
    buy(till, small, "100.00", days_ago=20)
    rule = {"all": [{"field": "spend", "op": "gte", "value": "400.00", "window_days": 30},
                    {"field": "days_since_last_purchase", "op": "gte", "value": 14}]}
    r = client.post("/api/v1/segments", headers=marketing, json={"name": "Big, gone quiet",
                                                                 "rule": rule})
    assert r.status_code == 201, r.get_json()
    segment = r.get_json()
    r = client.get(f"/api/v1/segments/{segment['id']}/preview", headers=marketing)
    assert r.status_code == 200
    assert (r.get_json()["count"], [c["id"] for c in r.get_json()["sample"]]) == \
        (1, [big_quiet.id])
    r = client.get(f"/api/v1/customers?segment_id={segment['id']}", headers=marketing)
    assert r.status_code == 200, r.get_json()
    assert [c["id"] for c in r.get_json()["items"]] == [big_quiet.id]
    r = client.post("/api/v1/segments/preview", headers=marketing, json={
        "rule": {"field": "spend", "op": "gte", "value": "400.00", "window_days": 30}})
    assert r.get_json()["count"] == 2
    assert client.get("/api/v1/customers?segment_id=999", headers=marketing).status_code == 404


def test_activity_fields(till, member, factory):
    web = Till(till.client, factory.headers("pos", store=factory.store(
        "WEB", channel="online", currency="EUR").code), "WEB")
    a, b, c = member(), member(), member()
    buy(till, a, "10.00", days_ago=2, sku="ESP-1", category="coffee")
    buy(till, a, "10.00", days_ago=40, sku="TEA-1", category="tea")
    buy(web, b, "10.00", days_ago=3, sku="TEA-1", category="tea")
    buy(web, c, "10.00", days_ago=3)
    buy(till, c, "10.00", days_ago=3)
    assert matching({"field": "bought_category", "op": "eq", "value": "coffee"}) == {a.id}
    assert matching({"field": "bought_category", "op": "in", "value": ["tea"],
                     "window_days": 30}) == {b.id}
    assert matching({"field": "bought_sku", "op": "eq", "value": "TEA-1"}) == {a.id, b.id}
    assert matching({"field": "store", "op": "eq", "value": "WEB"}) == {b.id, c.id}
    assert matching({"field": "channel", "op": "eq", "value": "online"}) == {b.id}
    assert matching({"field": "channel", "op": "eq", "value": "store"}) == {a.id}
    assert matching({"field": "channel", "op": "eq", "value": "both"}) == {c.id}
    everyone = matching({"field": "consent_sms", "op": "eq", "value": True})
    assert matching({"field": "purchase_count", "op": "eq", "value": 2}) == {a.id, c.id}
    assert matching({"field": "purchase_count", "op": "lt", "value": 1, "window_days": 7}) \
        == everyone - {a.id, b.id, c.id}  # none in the window counts as 0
    assert matching({"field": "days_since_last_purchase", "op": "between",
                     "value": [1, 2]}) == {a.id}
    assert matching({"not": {"field": "bought_category", "op": "eq", "value": "coffee"}}) \
        == everyone - {a.id}
    assert matching({"any": [{"field": "store", "op": "eq", "value": "WEB"},
                             {"field": "bought_sku", "op": "eq", "value": "ESP-1"}]}) \
        == {a.id, b.id, c.id}


def test_profile_fields(member, factory):
    today = datetime.now(UTC).date()
    thirty = member(birthday=date(today.year - 30, 1, 1), city="Lyon")
    young = member(birthday=date(today.year - 19, 12, 31), city="LYON")
    nobody = member(consent=False)
    assert matching({"field": "age", "op": "gte", "value": 30}) == {thirty.id}
    assert matching({"field": "age", "op": "between", "value": [18, 25]}) == {young.id}
    assert matching({"field": "birthday_month", "op": "eq", "value": 12}) == {young.id}
    assert matching({"field": "city", "op": "eq", "value": "lyon"}) == {thirty.id, young.id}
    assert matching({"field": "consent_sms", "op": "eq", "value": False}) == {nobody.id}
    since = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    assert matching({"field": "created_at", "op": "gte", "value": since}) == \
        {thirty.id, young.id, nobody.id}


def test_loyalty_and_answers_fields(client, till, member, twilio, factory):
    rich, poor = member(), member()
    buy(till, rich, "300.00")
    buy(till, poor, "5.00")
    assert matching({"field": "points_balance", "op": "gte", "value": 300}) == {rich.id}
    assert matching({"field": "points_expiring", "op": "gt", "value": 0,
                     "window_days": 400}) == {rich.id, poor.id}
    assert matching({"field": "points_expiring", "op": "gt", "value": 0,
                     "window_days": 30}) == set()
    assert matching({"field": "coupon_redeemed", "op": "eq", "value": True}) == set()
    # an NPS answer
    r = client.post("/api/v1/surveys", headers=factory.headers("marketing"), json={
        "name": "NPS", "kind": "nps", "question": "Recommend us?", "delay_hours": 0})
    assert r.status_code == 201
    buy(till, rich, "1.00", days_ago=0)
    from campaigns import surveys

    db.session.rollback()
    surveys.dispatch()
    db.session.commit()
    form, signature = twilio.signed_inbound(PUBLIC + "/webhooks/twilio/inbound", rich.phone,
                                            "3 slow")
    client.post("/webhooks/twilio/inbound", data=form,
                headers={"X-Twilio-Signature": signature})
    assert matching({"field": "nps_score", "op": "lte", "value": 6}) == {rich.id}


def test_rfm_scores_and_co_purchases(till, member):
    people = [member() for _ in range(10)]
    for n, person in enumerate(people):
        for visit in range(n + 1):
            buy(till, person, f"{10 * (n + 1)}.00", days_ago=100 - 9 * n - visit,
                category="coffee" if n % 2 else "tea")
    buy(till, people[0], "1.00", days_ago=1, category="cake")
    db.session.rollback()
    counts = segments.refresh_insights()
    db.session.commit()
    assert counts["scored"] == 10
    scores = {row.customer_id: (row.r, row.f, row.m)
              for row in db.session.scalars(select(CustomerRfm))}
    assert scores[people[9].id] == (5, 5, 5)
    assert scores[people[1].id][1:] == (1, 1)
    assert matching({"field": "rfm_f", "op": "gte", "value": 5}) == \
        {people[8].id, people[9].id}
    again = segments.refresh_insights()  # idempotent
    db.session.commit()
    assert again == counts


@pytest.mark.parametrize(("rule", "where"), [
    ({"all": [{"field": "spend", "op": "gte", "value": 400}]}, "rule.all[0].value"),
    ({"all": [{"field": "tier", "op": "eq", "value": "Gold"},
              {"field": "shoe_size", "op": "eq", "value": 42}]}, "rule.all[1].field"),
    ({"any": [{"field": "tier", "op": "gte", "value": "Gold"}]}, "rule.any[0].op"),
    ({"field": "points_expiring", "op": "gt", "value": 0}, "rule.window_days"),
    ({"field": "age", "op": "between", "value": [40, 20]}, "rule.value"),
    ({"field": "age", "op": "in", "value": []}, "rule.value"),
    ({"field": "city", "op": "eq", "value": "x", "window_days": 3}, "rule.window_days"),
    ({"not": [{"field": "city", "op": "eq", "value": "x"}]}, "rule.not"),
    ({"all": []}, "rule.all"),
    ({"all": [{"field": "city", "op": "eq", "value": "x"}], "any": []}, "rule"),
    ({"field": "created_at", "op": "gt", "value": "last week"}, "rule.value"),
    ({"field": "spend", "op": "gt", "value": "1.001"}, "rule.value"),
    ({"field": "channel", "op": "eq", "value": "mail"}, "rule.value"),
    ("everyone", "rule"),
    ({"field": [], "op": "eq", "value": 1}, "rule.field"),
    ({"field": {}, "op": "eq", "value": 1}, "rule.field"),
    ({"field": "city", "op": "in", "value": ["x"] * 101}, "rule.value"),
    ({"field": "age", "op": "in", "value": list(range(21))}, "rule.value"),
    ({"any": [{"field": "city", "op": "in", "value": [str(n) for n in range(100)]}] * 11},
     "rule.any[10]"),
])
def test_a_bad_rule_is_a_422_naming_the_node(client, marketing, program, rule, where):
    r = client.post("/api/v1/segments", headers=marketing, json={"name": "x", "rule": rule})
    assert r.status_code == 422, r.get_json()
    assert r.content_type == "application/problem+json"
    assert where in r.get_json()["errors"], r.get_json()
    assert client.get("/api/v1/segments", headers=marketing).get_json()["items"] == []


def test_a_deep_rule_is_refused(client, marketing, program):
    rule: dict = {"field": "city", "op": "eq", "value": "x"}
    for _ in range(20):
        rule = {"not": rule}
    r = client.post("/api/v1/segments", headers=marketing, json={"name": "x", "rule": rule})
    assert r.status_code == 422


def test_a_segment_is_counted_by_one_query(till, member, app):
    for _ in range(30):
        buy(till, member(), "50.00")
    rule = {"all": [{"field": "spend", "op": "gte", "value": "10.00", "window_days": 30},
                    {"field": "bought_category", "op": "eq", "value": "food"},
                    {"field": "consent_sms", "op": "eq", "value": True},
                    {"not": {"field": "days_since_last_purchase", "op": "gt", "value": 5}}]}
    checked = segments.checked(rule)
    db.session.rollback()
    seen: list[str] = []

    def record(conn, cursor, statement, *args):
        seen.append(statement)

    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", record)
        try:
            assert segments.count(checked) == 30
        finally:
            event.remove(db.engine, "before_cursor_execute", record)
    on_customers = [s for s in seen if "FROM customers" in s]
    assert len(on_customers) == 1, seen


def test_segments_need_a_marketing_key_and_can_be_renamed(client, marketing, factory,
                                                          program):
    body = {"name": "Everyone", "rule": {"field": "consent_sms", "op": "eq", "value": True}}
    assert client.post("/api/v1/segments", headers=factory.headers("pos"),
                       json=body).status_code == 403
    created = client.post("/api/v1/segments", headers=marketing, json=body).get_json()
    r = client.patch(f"/api/v1/segments/{created['id']}", headers=marketing,
                     json={"name": "All who agreed"})
    assert (r.status_code, r.get_json()["name"]) == (200, "All who agreed")
    r = client.patch(f"/api/v1/segments/{created['id']}", headers=marketing,
                     json={"rule": {"field": "nope"}})
    assert r.status_code == 422


def test_days_since_last_purchase_counts_whole_days(till, member):
    """A last purchase 14.5 days ago is 14 days ago for every operator."""
    person = member()
    buy(till, person, days_ago=14.5)
    verdicts = {(op, str(value)): matching({"field": "days_since_last_purchase", "op": op,
                                             "value": value}) == {person.id}
                for op, value in [("eq", 14), ("lte", 14), ("gte", 14), ("gt", 13),
                                  ("lt", 15), ("between", [0, 14]), ("in", [14]),
                                  ("eq", 15), ("gt", 14), ("lt", 14), ("gte", 15),
                                  ("lte", 13), ("ne", 14)]}
    assert [key for key, hit in verdicts.items() if hit] == [
        ("eq", "14"), ("lte", "14"), ("gte", "14"), ("gt", "13"), ("lt", "15"),
        ("between", "[0, 14]"), ("in", "[14]")]


def test_numbers_beyond_any_sense_are_refused_not_a_500(client, marketing, program):
    for rule in ({"field": "days_since_last_purchase", "op": "gte", "value": 1_000_000},
                 {"field": "purchase_count", "op": "gt", "value": 10**15},
                 {"field": "points_balance", "op": "lt", "value": -(10**15)}):
        r = client.post("/api/v1/segments/preview", headers=marketing, json={"rule": rule})
        assert r.status_code == 422, r.get_json()
        assert "rule.value" in r.get_json()["errors"]
