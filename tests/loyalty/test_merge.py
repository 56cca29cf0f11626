"""Merging two records of one person moves their identifiers, purchases and points, and
an unmerge puts everything back; balances stay right throughout."""

from datetime import date

from sqlalchemy import select

from crm.db import db
from crm.models import Customer
from tests.helpers import verify_clean


def _merge(client, admin, survivor, source, status=200, path="merge", **extra):
    r = client.post(f"/api/v1/customers/{survivor}/{path}", headers=admin,
                    json={"source_customer_id": source, **extra})
    assert r.status_code == status, r.get_json()
    return r.get_json()


def test_merge_then_unmerge_with_points_and_purchases(till, factory, admin, runner):
    online = factory.customer(email="ada@example.com", first_name="Ada", last_name=None,
                              birthday=date(1990, 12, 10))
    in_store = factory.customer(phone="+33612345678", email=None, first_name="A.",
                                last_name="Lovelace")
    shop = factory.headers("shop")
    till.client.put(f"/api/v1/customers/{online.id}/consent", headers=shop,
                    json={"sms": False})
    till.client.put(f"/api/v1/customers/{in_store.id}/consent", headers=till.headers,
                    json={"sms": True})
    p1 = till.buy({"id": online.id}, "30.00").get_json()
    till.buy({"id": in_store.id}, "50.00")
    till.buy({"id": in_store.id}, "20.00", redeem_points=10, lines=[
        {"sku": "X", "quantity": 1, "unit_price": "20.00", "earns": False}])

    record = _merge(till.client, admin, online.id, in_store.id)
    assert set(record["moved"]["loyalty"]) >= {"purchases", "lots"}
    profile = till.client.get(f"/api/v1/customers/{online.id}", headers=shop).get_json()
    assert profile["email"] == "ada@example.com" and profile["phone"] == "+33612345678"
    assert profile["first_name"] == "A." and profile["last_name"] == "Lovelace"
    assert profile["birthday"] == "1990-12-10"
    assert profile["consent"]["sms"] is True  # the most recent explicit choice
    assert profile["points_balance"] == 30 + 40
    gone = till.client.get(f"/api/v1/customers/{in_store.id}", headers=shop)
    assert gone.status_code == 200 and gone.get_json() == {"id": in_store.id,
                                                           "merged_into": online.id}
    found = till.client.get("/api/v1/customers?phone=%2B33612345678", headers=shop)
    assert [c["id"] for c in found.get_json()["items"]] == [online.id]
    by_old_id = till.buy({"id": in_store.id}, "10.00").get_json()
    assert by_old_id["customer_id"] == online.id and by_old_id["balance"] == 80
    ret = till.give_back(p1["id"]).get_json()
    assert ret["points_reversed"] == 30 and ret["balance"] == 50
    assert till.client.patch(f"/api/v1/customers/{in_store.id}", headers=shop,
                             json={"city": "x"}).status_code == 409
    verify_clean(runner)

    _merge(till.client, admin, online.id, in_store.id, path="unmerge")
    back = till.client.get(f"/api/v1/customers/{in_store.id}", headers=shop).get_json()
    assert back["phone"] == "+33612345678" and back["last_name"] == "Lovelace"
    assert back["points_balance"] == 40 and back["consent"]["sms"] is True
    kept = till.client.get(f"/api/v1/customers/{online.id}", headers=shop).get_json()
    assert kept["phone"] is None and kept["last_name"] is None
    assert kept["points_balance"] == 10 and kept["consent"]["sms"] is False
    verify_clean(runner)
    _merge(till.client, admin, online.id, in_store.id, path="unmerge", status=404)


def test_unmerge_waits_for_a_later_merge_that_depends_on_it(till, factory, admin):
    a, b, c = factory.customer(), factory.customer(), factory.customer()
    _merge(till.client, admin, a.id, b.id)
    _merge(till.client, admin, c.id, a.id)
    assert db.session.scalar(select(Customer.merged_into_id).where(Customer.id == b.id)) \
        == c.id
    r = till.client.post(f"/api/v1/customers/{a.id}/unmerge", headers=admin,
                         json={"source_customer_id": b.id})
    assert r.status_code == 409 and str(c.id) in r.get_json()["detail"]
    _merge(till.client, admin, c.id, a.id, path="unmerge")
    _merge(till.client, admin, a.id, b.id, path="unmerge")
    db.session.rollback()
    assert db.session.scalar(select(Customer.merged_into_id).where(Customer.id == b.id)) \
        is None


def test_refusals(till, factory, admin):
    one = factory.customer()
    _merge(till.client, admin, one.id, one.id, status=422)
    _merge(till.client, admin, one.id, 999999, status=404)
    shop = factory.headers("shop")
    results = till.client.post("/api/v1/customers/sync", headers=shop, json={"customers": [
        {"external_id": "X1", "email": "x1@example.com", "updated_at": "2026-11-01T00:00:00Z"},
        {"external_id": "X2", "email": "x2@example.com", "updated_at": "2026-11-01T00:00:00Z"},
    ]}).get_json()["results"]
    x1, x2 = (r["customer_id"] for r in results)
    r = _merge(till.client, admin, x1, x2, status=409)
    assert "force" in r["detail"]
    _merge(till.client, admin, x1, x2, force=True)
    _merge(till.client, admin, one.id, x2, status=409)  # merged already
    assert till.client.post(f"/api/v1/customers/{one.id}/merge", headers=shop,
                            json={"source_customer_id": x1}).status_code == 403


def test_tier_counts_the_merged_history(till, factory, admin):
    till.client.post("/api/v1/loyalty/tiers", headers=admin,
                     json={"name": "Silver", "threshold_points": 100})
    a, b = factory.customer(), factory.customer()
    till.buy({"id": a.id}, "60.00")
    till.buy({"id": b.id}, "30.00")
    _merge(till.client, admin, a.id, b.id)
    assert till.buy({"id": a.id}, "10.00").get_json()["tier"] == "Silver"


def test_unmerge_gives_back_the_tier_the_survivor_had(till, factory, admin):
    till.client.post("/api/v1/loyalty/tiers", headers=admin, json={"name": "Member"})
    till.client.post("/api/v1/loyalty/tiers", headers=admin,
                     json={"name": "Gold", "threshold_points": 100})
    a, b = factory.customer(), factory.customer()
    assert till.buy({"id": a.id}, "10.00").get_json()["tier"] == "Member"
    assert till.buy({"id": b.id}, "150.00").get_json()["tier"] == "Gold"
    _merge(till.client, admin, a.id, b.id)
    assert till.points(a.id)["tier"]["name"] == "Gold"
    _merge(till.client, admin, a.id, b.id, path="unmerge")
    assert till.points(a.id)["tier"]["name"] == "Member"
    assert till.points(b.id)["tier"]["name"] == "Gold"
