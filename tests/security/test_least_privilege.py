"""A till sees members masked and finds them only by an exact identifier; the shop posts
only for online stores; a PATCH cannot set what the service owns."""

from datetime import UTC, date, datetime

import pytest


def _member(factory):
    return factory.customer(email="ada.lovelace@example.com", phone="+12125550001",
                            card_number="C0001", first_name="Ada", last_name="Lovelace",
                            birthday=date(1990, 12, 10))


MASKED = {"id", "first_name", "last_initial", "phone_masked", "email_masked", "tier",
          "points_balance"}


def test_a_till_finds_one_member_by_exact_identifier_and_sees_a_masked_view(client, factory):
    ada = _member(factory)
    pos = factory.headers("pos")
    for query in ("phone=212-555-0001", "email=ADA.LOVELACE@example.com", "card=c0001"):
        r = client.get(f"/api/v1/customers?{query}", headers=pos)
        assert r.status_code == 200, r.json
        (item,) = r.json["items"]
        assert set(item) == MASKED
        assert item == {"id": ada.id, "first_name": "Ada", "last_initial": "L",
                        "phone_masked": "***0001", "email_masked": "a***@e***.com",
                        "tier": None, "points_balance": 0}
    r = client.get(f"/api/v1/customers/{ada.id}", headers=pos)
    assert r.status_code == 200 and set(r.json) == MASKED
    assert "Lovelace" not in r.text and "1990" not in r.text and "5550001" not in r.text


@pytest.mark.parametrize("query", ["", "page_size=100", "q=ada", "q=%2B12125550001",
                                   "segment_id=1&phone=2125550001"])
def test_a_till_cannot_list_or_search_by_name(client, factory, query):
    _member(factory)
    r = client.get(f"/api/v1/customers?{query}", headers=factory.headers("pos"))
    assert r.status_code == 403, r.json
    assert "Lovelace" not in r.text


def test_a_till_may_still_enrol_and_record_consent(client, factory):
    pos = factory.headers("pos")
    r = client.post("/api/v1/customers", headers=pos,
                    json={"phone": "+12125550002", "first_name": "Grace", "last_name": "Hopper"})
    assert r.status_code == 201 and set(r.json) == MASKED
    assert r.json["last_initial"] == "H"
    r = client.put(f"/api/v1/customers/{r.json['id']}/consent", headers=pos, json={"sms": True})
    assert r.status_code == 200 and r.json["sms"] is True


def test_the_shop_and_marketers_keep_full_profiles(client, factory):
    ada = _member(factory)
    for scope in ("shop", "marketing", "admin"):
        r = client.get(f"/api/v1/customers/{ada.id}", headers=factory.headers(scope))
        assert r.status_code == 200 and r.json["email"] == "ada.lovelace@example.com"
    r = client.get("/api/v1/customers?q=ada", headers=factory.headers("shop"))
    assert r.json["items"][0]["last_name"] == "Lovelace"


def test_the_shop_posts_sales_only_for_online_stores(client, factory):
    factory.store("NYC01", currency="USD", timezone="America/New_York", channel="store")
    factory.store("WEB01", currency="USD", timezone="America/New_York", channel="online")
    body = {"receipt_id": "R1", "occurred_at": datetime.now(UTC).isoformat(),
            "currency": "USD", "total": "500.00",
            "lines": [{"sku": "TV", "quantity": 1, "unit_price": "500.00"}]}
    shop = factory.headers("shop")
    r = client.post("/api/v1/purchases", headers=shop, json={**body, "store_code": "NYC01"})
    assert r.status_code == 403 and r.mimetype == "application/problem+json"
    r = client.post("/api/v1/purchases", headers=shop, json={**body, "store_code": "WEB01"})
    assert r.status_code == 201


@pytest.mark.parametrize("field, value", [("points_balance", 100000), ("tier", "Gold"),
                                          ("store_id", 1), ("merged_into", 1),
                                          ("merged_into_id", 1), ("erased_at", None),
                                          ("id", 99)])
def test_mass_assignment_is_refused(client, factory, field, value):
    ada = _member(factory)
    r = client.patch(f"/api/v1/customers/{ada.id}", headers=factory.headers("shop"),
                     json={"first_name": "Eve", field: value})
    assert r.status_code == 422 and field in r.json["errors"]
    again = client.get(f"/api/v1/customers/{ada.id}", headers=factory.headers("shop")).json
    assert again["first_name"] == "Ada" and again["points_balance"] == 0
