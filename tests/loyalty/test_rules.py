from datetime import UTC, date, datetime

import pytest

from tests.helpers import verify_clean

LINES = [{"sku": "SHOE", "category": "shoes", "quantity": 2, "unit_price": "30.00"},
         {"sku": "SOCK", "category": "socks", "quantity": 4, "unit_price": "10.00"}]
MONDAY_NIGHT_UTC = datetime(2026, 11, 23, 23, 30, tzinfo=UTC)  # Tuesday in Paris


@pytest.fixture
def rule(till, factory):
    marketing = factory.headers("marketing")

    def make(**body):
        body.setdefault("name", "bonus")
        r = till.client.post("/api/v1/loyalty/earning-rules", headers=marketing, json=body)
        assert r.status_code == 201, r.get_json()
        return r.get_json()

    make.headers = marketing
    return make


def earned(till, member, **kwargs):
    return till.buy(member, "100.00", lines=LINES, **kwargs).get_json()["points_earned"]


def test_multiplier_on_skus_and_fixed_on_categories(till, factory, rule, runner):
    c = factory.customer()
    rule(kind="multiplier", value="3", skus=["SHOE"])
    rule(kind="fixed", value="50", categories=["socks"])
    rule(kind="fixed", value="1000", categories=["hats"])
    assert earned(till, {"id": c.id}) == 100 + 2 * 60 + 50
    verify_clean(runner)


def test_store_weekday_and_date_range_use_the_store_local_day(till, factory, rule):
    c = factory.customer()
    rule(kind="fixed", value="7", store_codes=["ELSEWHERE"])
    rule(kind="fixed", value="10", weekdays=[1])  # Tuesday
    assert earned(till, {"id": c.id}, occurred_at=MONDAY_NIGHT_UTC) == 110
    assert earned(till, {"id": c.id},
                  occurred_at=datetime(2026, 11, 23, 12, 0, tzinfo=UTC)) == 100
    rule(kind="fixed", value="5", valid_from="2026-11-12T00:00:00+01:00",
         valid_to="2026-11-13T00:00:00+01:00")
    assert earned(till, {"id": c.id},
                  occurred_at=datetime(2026, 11, 12, 10, 0, tzinfo=UTC)) == 105
    assert earned(till, {"id": c.id},
                  occurred_at=datetime(2026, 11, 13, 10, 0, tzinfo=UTC)) == 100


def test_first_purchase_and_birthday_month(till, factory, rule):
    rule(kind="fixed", value="25", first_purchase=True)
    rule(kind="multiplier", value="2", birthday_month=True)
    c = factory.customer(birthday=date(1990, 11, 5))
    assert earned(till, {"id": c.id}, occurred_at=MONDAY_NIGHT_UTC) == 100 + 25 + 100
    assert earned(till, {"id": c.id}, occurred_at=MONDAY_NIGHT_UTC) == 200
    assert earned(till, {"id": c.id},
                  occurred_at=datetime(2026, 10, 5, 10, tzinfo=UTC)) == 100


def test_min_spend_and_cap_per_period(till, factory, rule):
    c = factory.customer()
    rule(kind="fixed", value="20", min_spend="150.00")
    rule(kind="multiplier", value="2", categories=["shoes"], min_spend="70.00")
    rule(kind="fixed", value="100", cap_points=150, cap_period="day")
    day = datetime(2026, 11, 20, 10, tzinfo=UTC)
    assert earned(till, {"id": c.id}, occurred_at=day) == 100 + 100
    assert earned(till, {"id": c.id}, occurred_at=day) == 100 + 50
    assert earned(till, {"id": c.id}, occurred_at=day) == 100
    assert earned(till, {"id": c.id},
                  occurred_at=datetime(2026, 11, 21, 10, tzinfo=UTC)) == 200


def test_switched_off_and_deleted_rules_give_nothing(till, factory, rule):
    c = factory.customer()
    off = rule(kind="fixed", value="9")
    url = f"/api/v1/loyalty/earning-rules/{off['id']}"
    r = till.client.patch(url, headers=rule.headers, json={"active": False})
    assert r.status_code == 200 and r.get_json()["active"] is False
    gone = rule(kind="fixed", value="8")
    assert till.client.delete(f"/api/v1/loyalty/earning-rules/{gone['id']}",
                              headers=rule.headers).status_code == 204
    assert earned(till, {"id": c.id}) == 100
    listed = till.client.get("/api/v1/loyalty/earning-rules", headers=rule.headers)
    assert [r["active"] for r in listed.get_json()["items"]] == [False, False]


def test_rule_validation(till, rule):
    for body, field in (({"kind": "fixed", "value": "5", "cap_points": 10}, "cap_period"),
                        ({"kind": "fixed", "value": "5.5"}, "value"),
                        ({"kind": "fixed", "value": 5.5}, "value"),
                        ({"kind": "bogus", "value": "5"}, "kind"),
                        ({"kind": "fixed", "value": "5", "weekdays": [7]}, "weekdays"),
                        ({"kind": "fixed", "value": "5", "min_spend": "1.001"}, "min_spend"),
                        ({"kind": "fixed", "value": "5", "valid_from": "2026-02-01T00:00:00Z",
                          "valid_to": "2026-01-01T00:00:00Z"}, "valid_to")):
        r = till.client.post("/api/v1/loyalty/earning-rules", headers=rule.headers,
                             json={"name": "x", **body})
        assert r.status_code == 422, (body, r.get_json())
        assert field in r.get_json()["errors"], (body, r.get_json())
    assert till.client.post("/api/v1/loyalty/earning-rules", headers=till.headers,
                            json={"name": "x", "kind": "fixed", "value": "1"}).status_code == 403
    assert till.client.patch("/api/v1/loyalty/earning-rules/999", headers=rule.headers,
                             json={"active": False}).status_code == 404
