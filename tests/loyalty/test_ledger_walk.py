"""Random walks through everything that moves points — sales with points and coupons,
returns of every kind, held returns, claims, adjustments, rewards, merges and unmerges,
and the jobs — checking after every step that no answer is a 5xx and that every balance
still equals its ledger and its lots."""

import random
from datetime import UTC, datetime, timedelta

import pytest

from crm.db import db, utcnow
from loyalty import accounts, jobs, settings

STEPS = 45


def _verify(step: str) -> None:
    db.session.rollback()
    problems = accounts.verify()
    db.session.rollback()
    assert problems == [], (step, problems)


@pytest.mark.parametrize("seed, allow_negative", [(1, False), (2, True), (3, False),
                                                  (4, True)])
def test_random_walk_keeps_every_balance_right(till, factory, admin, seed, allow_negative):
    rnd = random.Random(seed)
    settings.update_program({"allow_negative": allow_negative,
                             "pending_days": rnd.choice([0, 14]),
                             "expiry_days": rnd.choice([30, 365])})
    db.session.commit()
    client, marketing = till.client, factory.headers("marketing")
    members = [factory.customer().id for _ in range(3)]
    codes = []
    for kind, value in (("percent", "10"), ("amount", "2.00"), ("bonus_points", "25")):
        offer = client.post("/api/v1/offers", headers=marketing, json={
            "name": kind, "kind": kind, "value": value, "stackable": True}).get_json()
        codes += client.post(f"/api/v1/offers/{offer['id']}/coupons", headers=marketing,
                             json={"count": 4}).get_json()["codes"]
    reward = client.post("/api/v1/rewards", headers=marketing, json={
        "name": "r", "points_cost": 30, "offer_id": offer["id"]}).get_json()["id"]
    sales, held, merged = [], [], []
    for step in range(STEPS):
        op = rnd.choice(["buy"] * 5 + ["return"] * 3 + ["held", "claim", "adjust", "reward",
                                                         "merge", "unmerge", "jobs"])
        who = rnd.choice(members)
        when = datetime.now(UTC) - timedelta(days=rnd.choice([0, 1, 20, 40]))
        if op == "buy":
            price = f"{rnd.randint(0, 5000) / 100:.2f}"
            extra = {}
            if rnd.random() < 0.4:
                extra["redeem_points"] = rnd.randint(0, 80)
            if rnd.random() < 0.3:
                extra["coupon_codes"] = [rnd.choice(codes)]
            receipt = held.pop() if held and rnd.random() < 0.5 else f"W{seed}-{step}"
            r = till.buy({"id": who} if rnd.random() > 0.2 else None, price, expect=None,
                         receipt_id=receipt, occurred_at=when, lines=[
                             {"sku": "A", "quantity": 1, "unit_price": price,
                              "earns": rnd.random() > 0.1}], **extra)
            if r.status_code == 201:
                sales.append(r.get_json()["id"])
        elif op == "return" and sales:
            body = rnd.choice([{}, {"amount": "1.00"}, {"lines": [{"sku": "A", "quantity": 1}]}])
            r = till.give_back(rnd.choice(sales), expect=None, **body)
        elif op == "held":
            receipt = f"H{seed}-{step}"
            held.append(receipt)
            r = client.post("/api/v1/returns", headers=till.headers,
                            json={"receipt_id": receipt, "return_id": f"HR{seed}-{step}"})
        elif op == "claim" and sales:
            r = client.post(f"/api/v1/purchases/{rnd.choice(sales)}/claim",
                            headers=till.headers, json={"customer": {"id": who}})
        elif op == "adjust":
            r = client.post(f"/api/v1/customers/{who}/points/adjustments", headers=admin,
                            json={"points": rnd.choice([-40, -5, 20, 90]), "reason": "walk"})
        elif op == "reward":
            r = client.post(f"/api/v1/rewards/{reward}/claims", headers=till.headers,
                            json={"customer_id": who})
        elif op == "merge":
            other = rnd.choice([m for m in members if m != who])
            r = client.post(f"/api/v1/customers/{who}/merge", headers=admin,
                            json={"source_customer_id": other})
            if r.status_code == 200:
                merged.append((who, other))
        elif op == "unmerge" and merged:
            survivor, source = merged.pop()
            r = client.post(f"/api/v1/customers/{survivor}/unmerge", headers=admin,
                            json={"source_customer_id": source})
        else:
            later = utcnow() + timedelta(days=rnd.choice([1, 15, 400]))
            jobs.release_pending(later)
            jobs.expire_points(later)
            db.session.commit()
            r = None
        if r is not None:
            assert r.status_code < 500, (op, r.get_json())
        _verify(f"seed {seed} step {step} {op}")
