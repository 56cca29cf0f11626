from datetime import timedelta

from sqlalchemy import func, select

from crm.db import db, utcnow
from loyalty.models import LedgerEntry, RewardClaim
from tests.helpers import ago, verify_clean


def _reward(till, marketing, **body):
    offer = till.client.post("/api/v1/offers", headers=marketing, json={
        "name": "free coffee", "kind": "free_item", "value": "1", "skus": ["COFFEE"]})
    r = till.client.post("/api/v1/rewards", headers=marketing,
                         json={"name": "Coffee", "points_cost": 100,
                               "offer_id": offer.get_json()["id"], **body})
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def test_a_claim_spends_points_and_issues_a_personal_coupon(till, factory, runner):
    marketing = factory.headers("marketing")
    reward = _reward(till, marketing)
    c = factory.customer()
    till.buy({"id": c.id}, "150.00")
    r = till.client.post(f"/api/v1/rewards/{reward['id']}/claims", headers=till.headers,
                         json={"customer_id": c.id})
    assert r.status_code == 201, r.get_json()
    claim = r.get_json()
    assert claim["points"] == 100 and claim["balance"] == 50
    row = db.session.scalar(select(LedgerEntry).where(LedgerEntry.cause == "reward"))
    assert row.kind == "redeem" and row.points == -100
    mine = till.client.get(f"/api/v1/customers/{c.id}/coupons", headers=till.headers)
    assert [i["code"] for i in mine.get_json()["items"]] == [claim["coupon_code"]]
    body = till.buy({"id": c.id}, "3.50", coupon_codes=[claim["coupon_code"]], lines=[
        {"sku": "COFFEE", "quantity": 1, "unit_price": "3.50"}]).get_json()
    assert body["discount"] == "3.50" and body["points_earned"] == 0
    verify_clean(runner)


def test_a_failed_claim_spends_nothing(till, factory):
    marketing = factory.headers("marketing")
    c = factory.customer()
    till.buy({"id": c.id}, "99.00")
    poor = _reward(till, marketing)
    r = till.client.post(f"/api/v1/rewards/{poor['id']}/claims", headers=till.headers,
                         json={"customer_id": c.id})
    assert r.status_code == 409 and r.get_json()["balance"] == 99
    till.buy({"id": c.id}, "300.00")
    scarce = _reward(till, marketing, stock=1, per_customer_limit=1)
    url = f"/api/v1/rewards/{scarce['id']}/claims"
    assert till.client.post(url, headers=till.headers,
                            json={"customer_id": c.id}).status_code == 201
    again = till.client.post(url, headers=till.headers, json={"customer_id": c.id})
    assert again.status_code == 409 and again.get_json()["reason"] == "customer_limit_reached"
    other = factory.customer()
    till.buy({"id": other.id}, "300.00")
    r = till.client.post(url, headers=till.headers, json={"customer_id": other.id})
    assert r.status_code == 409 and r.get_json()["reason"] == "out_of_stock"
    assert till.points(other.id)["balance"] == 300
    off = _reward(till, marketing, active=False)
    r = till.client.post(f"/api/v1/rewards/{off['id']}/claims", headers=till.headers,
                         json={"customer_id": other.id})
    assert r.status_code == 409
    listed = till.client.get("/api/v1/rewards", headers=till.headers).get_json()["items"]
    assert off["id"] not in [x["id"] for x in listed]
    assert db.session.scalar(select(func.count()).select_from(RewardClaim)) == 1
    assert till.client.post("/api/v1/rewards/999/claims", headers=till.headers,
                            json={"customer_id": other.id}).status_code == 404


def test_a_retried_claim_with_an_idempotency_key_is_made_once(till, factory):
    reward = _reward(till, factory.headers("marketing"))
    c = factory.customer()
    till.buy({"id": c.id}, "500.00")
    headers = {**till.headers, "Idempotency-Key": "claim-1"}
    url = f"/api/v1/rewards/{reward['id']}/claims"
    first = till.client.post(url, headers=headers, json={"customer_id": c.id})
    again = till.client.post(url, headers=headers, json={"customer_id": c.id})
    assert first.get_json() == again.get_json() and till.points(c.id)["balance"] == 400


def test_points_and_coupons_expiring_soon(till, factory):
    marketing = factory.headers("marketing")
    c = factory.customer()
    till.buy({"id": c.id}, "40.00", occurred_at=ago(days=350))
    till.buy({"id": c.id}, "60.00", occurred_at=ago(days=10))
    r = till.client.get("/api/v1/loyalty/expiring-points?within_days=30", headers=marketing)
    assert r.status_code == 200
    assert [(i["customer_id"], i["points"]) for i in r.get_json()["items"]] == [(c.id, 40)]
    soon = (utcnow() + timedelta(days=5)).date().isoformat()
    offer = till.client.post("/api/v1/offers", headers=marketing, json={
        "name": "soon", "kind": "percent", "value": "10", "valid_to": soon}).get_json()
    till.client.post(f"/api/v1/offers/{offer['id']}/coupons", headers=marketing,
                     json={"customer_id": c.id})
    r = till.client.get("/api/v1/coupons/expiring?within_days=7", headers=marketing)
    items = r.get_json()["items"]
    assert len(items) == 1 and items[0]["customer_id"] == c.id and items[0]["valid_to"] == soon
    r = till.client.get("/api/v1/coupons/expiring?within_days=2", headers=marketing)
    assert r.get_json()["items"] == []
