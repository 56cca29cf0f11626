"""Fraud rules on points, each at its threshold (exactly at it passes, one more trips
it), and the one-time code a till needs to spend points above the program's threshold."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from campaigns.models import Message
from crm.db import db
from crm.models import SecurityAlert
from loyalty import settings


def _alerts(rule):
    db.session.rollback()
    return db.session.scalars(select(SecurityAlert).where(SecurityAlert.rule == rule)).all()


@pytest.fixture
def rich(factory, till):
    """A member with 500 points."""
    c = factory.customer(phone="+12125550101", consent={"sms": True})
    till.buy({"id": c.id}, "500.00")
    return c


def test_spending_right_after_a_contact_change_alerts(till, rich, client, factory):
    till.buy({"id": rich.id}, "10.00", redeem_points=10)  # enrolled, never changed: quiet
    assert _alerts("points_after_contact_change") == []
    r = client.patch(f"/api/v1/customers/{rich.id}", headers=factory.headers("shop"),
                     json={"phone": "+12125550199"})
    assert r.status_code == 200
    till.buy({"id": rich.id}, "10.00")  # no points spent: quiet
    assert _alerts("points_after_contact_change") == []
    till.buy({"phone": "+12125550199"}, "10.00", redeem_points=10)
    [alert] = _alerts("points_after_contact_change")
    assert alert.subject == f"customer:{rich.id}" and "+1212" not in alert.detail
    till.buy({"id": rich.id}, "10.00", redeem_points=10)
    assert _alerts("points_after_contact_change")[0].count == 2


def test_one_member_at_several_stores_within_minutes_alerts(client, factory, program, rich,
                                                            app, monkeypatch, till):
    monkeypatch.setitem(app.config, "STORE_HOP_LIMIT", 2)
    other = factory.headers("pos", store=factory.store(currency="EUR").code)
    third = factory.headers("pos", store=factory.store(currency="EUR").code)
    # rich bought at the till's store already; a second store is within the limit.
    for headers in (till.headers, other, other):
        till.__class__(client, headers, "").buy({"id": rich.id}, "5.00")
    assert _alerts("store_hopping") == []
    till.__class__(client, third, "").buy({"id": rich.id}, "5.00")
    [alert] = _alerts("store_hopping")
    assert alert.subject == f"customer:{rich.id}"


def test_store_hopping_counts_the_sales_of_the_window_by_their_time(client, factory, program,
                                                                     app, monkeypatch, till):
    """The stores are read from the member's purchases, by when they were made: a sale
    synced late counts at its own time, and sales older than the window do not."""
    member = factory.customer()  # no sale yet (rich has one at the till's store)
    monkeypatch.setitem(app.config, "STORE_HOP_LIMIT", 2)
    monkeypatch.setitem(app.config, "STORE_HOP_MINUTES", 30)
    tills = [till.__class__(client, factory.headers("pos", store=factory.store(
        currency="EUR").code), "") for _ in range(3)]
    now = datetime.now(UTC)
    tills[0].buy({"id": member.id}, "5.00", occurred_at=now - timedelta(minutes=50))
    tills[1].buy({"id": member.id}, "5.00", occurred_at=now - timedelta(minutes=10))
    tills[2].buy({"id": member.id}, "5.00", occurred_at=now)  # the first is 50 minutes back
    assert _alerts("store_hopping") == []
    # A till syncing late: its sale was 45 minutes ago, within 30 of the first one.
    tills[1].buy({"id": member.id}, "5.00", occurred_at=now - timedelta(minutes=45))
    assert _alerts("store_hopping") == []  # two stores in [-75, -45]: the first two
    tills[2].buy({"id": member.id}, "5.00", occurred_at=now - timedelta(minutes=40))
    [alert] = _alerts("store_hopping")  # stores 1, 2 and 3 within [-70, -40]
    assert alert.subject == f"customer:{member.id}" and alert.count == 1
    tills[2].buy({"id": member.id}, "5.00", occurred_at=now - timedelta(minutes=39))
    assert _alerts("store_hopping")[0].count == 1  # the same store again: nothing new


def test_a_till_returning_many_redeeming_sales_alerts(till, rich, app, monkeypatch):
    monkeypatch.setitem(app.config, "CASHIER_RETURN_LIMIT", 2)
    plain = till.buy({"id": rich.id}, "20.00").get_json()["id"]
    till.give_back(plain)  # no points redeemed on it: not counted
    sales = [till.buy({"id": rich.id}, "20.00", redeem_points=10).get_json()["id"]
             for _ in range(3)]
    for sale in sales[:2]:
        till.give_back(sale)
    assert _alerts("cashier_returns") == []
    till.give_back(sales[2])
    [alert] = _alerts("cashier_returns")
    assert alert.subject.startswith("key:")


def test_many_manual_adjustments_alert(till, rich, admin, app, monkeypatch):
    monkeypatch.setitem(app.config, "ADJUSTMENT_LIMIT", 2)
    url = f"/api/v1/customers/{rich.id}/points/adjustments"
    for _ in range(2):
        assert till.client.post(url, headers=admin, json={"points": 5, "reason": "x"}
                                ).status_code == 201
    assert _alerts("manual_adjustments") == []
    till.client.post(url, headers=admin, json={"points": 5, "reason": "x"})
    [alert] = _alerts("manual_adjustments")
    assert re.fullmatch(r"key:\d+", alert.subject)


def test_guessing_coupon_codes_alerts(till, app, monkeypatch):
    monkeypatch.setitem(app.config, "COUPON_GUESS_LIMIT", "3 per minute")
    body = {"basket": {"total": "1.00", "lines": [
        {"sku": "A", "quantity": 1, "unit_price": "1.00"}]}}
    for n in range(3):
        r = till.client.post("/api/v1/coupons/validate", headers=till.headers,
                             json={"code": f"GUESS{n}", **body})
        assert r.status_code == 200 and r.get_json()["reason"] == "not_found"
    assert _alerts("coupon_guessing") == []
    r = till.client.post("/api/v1/coupons/validate", headers=till.headers,
                         json={"code": "GUESS9", **body})
    assert r.status_code == 429
    [alert] = _alerts("coupon_guessing")
    assert alert.subject.startswith("key:")


@pytest.fixture
def threshold(program):
    settings.update_program({"verification_threshold": 50})
    db.session.commit()


def _code(customer_id):
    db.session.rollback()
    body = db.session.scalars(select(Message).where(Message.customer_id == customer_id)
                              .order_by(Message.id.desc())).first().body
    return re.search(r"\b(\d{6})\b", body).group(1)


def test_a_till_needs_the_members_code_above_the_threshold(till, rich, threshold, factory):
    till.buy({"id": rich.id}, "60.00", redeem_points=50)  # at the threshold: no code
    r = till.buy({"id": rich.id}, "60.00", redeem_points=51, expect=403)
    assert r.get_json()["type"].endswith("verification-required")
    sent = till.client.post(f"/api/v1/customers/{rich.id}/verification", headers=till.headers)
    assert sent.status_code == 202 and sent.get_json()["sent_to"] == "***0101"
    code = _code(rich.id)
    assert code not in sent.text
    wrong = "000000" if code != "000000" else "111111"
    r = till.buy({"id": rich.id}, "60.00", redeem_points=51, verification_code=wrong,
                 expect=422)
    assert "verification_code" in r.get_json()["errors"]
    at = "2026-01-02T10:00:00+00:00"
    ok = till.buy({"id": rich.id}, "60.00", redeem_points=51, verification_code=code,
                  receipt_id="BIG1", occurred_at=at)
    again = till.buy({"id": rich.id}, "60.00", redeem_points=51, verification_code=code,
                     receipt_id="BIG1", occurred_at=at, expect=200)  # a retry: the same sale
    assert again.get_json() == ok.get_json()
    r = till.buy({"id": rich.id}, "60.00", redeem_points=51, verification_code=code,
                 expect=403)  # used once already
    assert r.get_json()["reason"] == "used"
    # The shop's key is not a till's: no code asked.
    shop = factory.headers("shop")
    assert till.client.get(f"/api/v1/customers/{rich.id}/points", headers=shop).status_code == 200


def test_wrong_codes_are_counted_even_though_the_sale_fails(till, rich, threshold, app):
    till.client.post(f"/api/v1/customers/{rich.id}/verification", headers=till.headers)
    code = _code(rich.id)
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(app.config["VERIFICATION_ATTEMPTS"]):
        till.buy({"id": rich.id}, "60.00", redeem_points=60, verification_code=wrong,
                 expect=422)
    r = till.buy({"id": rich.id}, "60.00", redeem_points=60, verification_code=code,
                 expect=403)
    assert r.get_json()["reason"] == "expired"


def test_a_reward_claim_above_the_threshold_needs_the_code(till, rich, threshold, factory):
    marketing = factory.headers("marketing")
    offer = till.client.post("/api/v1/offers", headers=marketing,
                             json={"name": "mug", "kind": "percent", "value": "10"}
                             ).get_json()
    reward = till.client.post("/api/v1/rewards", headers=marketing, json={
        "name": "Mug", "points_cost": 80, "offer_id": offer["id"]}).get_json()
    url = f"/api/v1/rewards/{reward['id']}/claims"
    r = till.client.post(url, headers=till.headers, json={"customer_id": rich.id})
    assert r.status_code == 403, r.get_json()
    till.client.post(f"/api/v1/customers/{rich.id}/verification", headers=till.headers)
    r = till.client.post(url, headers=till.headers,
                         json={"customer_id": rich.id, "verification_code": _code(rich.id)})
    assert r.status_code == 201, r.get_json()


def test_a_member_without_sms_gets_no_code(till, factory, threshold):
    c = factory.customer(email="nosms@example.com")
    r = till.client.post(f"/api/v1/customers/{c.id}/verification", headers=till.headers)
    assert r.status_code == 422
