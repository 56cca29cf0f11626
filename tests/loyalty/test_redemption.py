from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import requests
from sqlalchemy import select

from crm.db import db
from loyalty import settings
from loyalty.models import Lot
from tests.helpers import Till, ago, verify_clean


def test_redeeming_spends_the_lots_closest_to_expiry_first(till, factory, runner):
    c = factory.customer()
    old = till.buy({"id": c.id}, "30.00", occurred_at=ago(days=300)).get_json()
    new = till.buy({"id": c.id}, "50.00", occurred_at=ago(days=10)).get_json()
    body = till.buy({"id": c.id}, "40.00", redeem_points=40).get_json()
    assert body["points_redeemed"] == 40 and body["discount"] == "0.40"
    assert body["paid"] == "39.60" and body["points_earned"] == 39
    remaining = dict(db.session.execute(select(Lot.purchase_id, Lot.remaining)).all())
    assert remaining[old["id"]] == 0 and remaining[new["id"]] == 40
    assert till.points(c.id)["balance"] == 30 + 50 - 40 + 39
    verify_clean(runner)


def test_never_more_than_the_balance_nor_the_purchase_is_worth(till, factory):
    c = factory.customer()
    till.buy({"id": c.id}, "20.00")
    r = till.buy({"id": c.id}, "50.00", redeem_points=21, expect=409)
    assert r.get_json()["balance"] == 20 and r.mimetype == "application/problem+json"
    r = till.buy({"id": c.id}, "0.10", redeem_points=11, expect=422)
    assert "redeem_points" in r.get_json()["errors"]
    assert till.points(c.id)["balance"] == 20


def test_whole_points_can_pay_a_total_with_cents(till, factory, admin):
    """A point worth 0.05: 12.34 needs 246.8 points; 247 pay it exactly, not 12.35."""
    settings.update_program({"point_value": __import__("decimal").Decimal("0.05")})
    db.session.commit()
    c = factory.customer()
    till.client.post(f"/api/v1/customers/{c.id}/points/adjustments", headers=admin,
                     json={"points": 500, "reason": "welcome"})
    body = till.buy({"id": c.id}, "12.34", redeem_points=247).get_json()
    assert body["discount"] == "12.34" and body["paid"] == "0.00"
    assert body["points_earned"] == 0
    till.buy({"id": c.id}, "12.34", redeem_points=248, expect=422)


def test_negative_allowed_lets_the_till_spend_on_credit(till, factory):
    settings.update_program({"allow_negative": True})
    db.session.commit()
    c = factory.customer()
    till.buy({"id": c.id}, "10.00")
    body = till.buy({"id": c.id}, "50.00", redeem_points=30).get_json()
    assert body["balance"] == -20 + 49
    assert till.points(c.id)["debt"] == 0


def test_two_tills_spending_the_same_points_one_wins(live_server, client, factory, program,
                                                     runner):
    store = factory.store("PAR02", currency="EUR")
    tills = [Till(client, factory.headers("pos", store=store.code), store.code)
             for _ in range(2)]
    c = factory.customer()
    tills[0].buy({"id": c.id}, "100.00")

    def spend(n):
        body = {"receipt_id": f"SPEND-{n}", "occurred_at": datetime.now(UTC).isoformat(),
                "currency": "EUR", "total": "80.00", "customer": {"id": c.id},
                "redeem_points": 80,
                "lines": [{"sku": "A", "quantity": 1, "unit_price": "80.00",
                           "earns": False}]}
        return requests.post(f"{live_server}/api/v1/purchases",
                             headers=tills[n % 2].headers, json=body, timeout=30)

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(spend, range(6)))
    codes = sorted(r.status_code for r in answers)
    assert codes == [201, 409, 409, 409, 409, 409], [r.text for r in answers]
    won = next(r.json() for r in answers if r.status_code == 201)
    assert won["points_redeemed"] == 80
    assert tills[0].points(c.id)["balance"] == 100 - 80
    verify_clean(runner)
