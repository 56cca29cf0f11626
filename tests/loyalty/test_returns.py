import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal

import requests
from sqlalchemy import func, select

from crm.db import db
from loyalty import settings
from loyalty.models import LedgerEntry, Purchase, PurchaseReturn
from tests.helpers import verify_clean

LINES = [{"sku": "SHOE", "category": "shoes", "quantity": 2, "unit_price": "30.00"},
         {"sku": "SOCK", "category": "socks", "quantity": 4, "unit_price": "10.00"}]


def test_full_return_takes_back_earned_and_gives_back_redeemed(till, factory, runner):
    c = factory.customer()
    till.buy({"id": c.id}, "50.00")
    sale = till.buy({"id": c.id}, "100.00", lines=LINES, redeem_points=50).get_json()
    assert sale["points_earned"] == 99 and sale["balance"] == 99
    back = till.give_back(sale["id"]).get_json()
    assert back["status"] == "applied" and back["amount"] == "99.50"
    assert back["points_reversed"] == 99 and back["points_restored"] == 50
    assert back["balance"] == 50
    assert till.points(c.id)["balance"] == 50
    till.give_back(sale["id"], expect=422)  # nothing left to return
    verify_clean(runner)


def test_partial_returns_are_proportional_and_never_take_back_twice(till, factory, runner):
    c = factory.customer()
    sale = till.buy({"id": c.id}, "100.00", lines=LINES).get_json()
    assert sale["points_earned"] == 100
    one = till.give_back(sale["id"], lines=[{"sku": "SHOE", "quantity": 1}]).get_json()
    assert one["amount"] == "30.00" and one["points_reversed"] == 30
    two = till.give_back(sale["id"], amount="20.00").get_json()
    assert two["points_reversed"] == 20
    r = till.give_back(sale["id"], lines=[{"sku": "SHOE", "quantity": 2}], expect=422)
    assert "SHOE" in r.get_json()["errors"]
    rest = till.give_back(sale["id"]).get_json()
    assert rest["amount"] == "50.00" and rest["points_reversed"] == 50
    assert till.points(c.id)["balance"] == 0 and till.points(c.id)["lifetime"] == 0
    verify_clean(runner)


def test_return_id_is_used_once(till, factory):
    c = factory.customer()
    sale = till.buy({"id": c.id}, "100.00", lines=LINES).get_json()
    first = till.give_back(sale["id"], return_id="B-1", amount="10.00")
    again = till.give_back(sale["id"], return_id="B-1", amount="10.00", expect=200)
    assert again.get_json() == first.get_json()
    till.give_back(sale["id"], return_id="B-1", amount="20.00", expect=409)
    assert till.points(c.id)["balance"] == 90
    reversals = db.session.scalar(select(func.count()).select_from(LedgerEntry)
                                  .where(LedgerEntry.kind == "reverse"))
    assert reversals == 1


def test_spent_points_are_capped_at_zero_unless_negative_is_allowed(till, factory, runner):
    c = factory.customer()
    sale = till.buy({"id": c.id}, "100.00").get_json()
    till.buy({"id": c.id}, "90.00", redeem_points=90, lines=[
        {"sku": "X", "quantity": 1, "unit_price": "90.00", "earns": False}])
    back = till.give_back(sale["id"]).get_json()
    assert back["points_reversed"] == 10 and back["points_uncollected"] == 90
    assert till.points(c.id)["balance"] == 0

    settings.update_program({"allow_negative": True})
    db.session.commit()
    other = factory.customer()
    sale = till.buy({"id": other.id}, "100.00").get_json()
    till.buy({"id": other.id}, "90.00", redeem_points=90, lines=[
        {"sku": "X", "quantity": 1, "unit_price": "90.00", "earns": False}])
    back = till.give_back(sale["id"]).get_json()
    assert back["points_reversed"] == 100 and back["balance"] == -90
    shown = till.points(other.id)
    assert shown["balance"] == -90 and shown["debt"] == 90
    till.buy({"id": other.id}, "100.00")  # new points repay the debt first
    assert till.points(other.id)["balance"] == 10
    verify_clean(runner)


def test_pending_points_are_taken_back_from_pending(till, factory, runner):
    settings.update_program({"pending_days": 14})
    db.session.commit()
    c = factory.customer()
    sale = till.buy({"id": c.id}, "100.00", lines=LINES).get_json()
    assert sale["points_pending"] == 100 and sale["balance"] == 0
    till.give_back(sale["id"], lines=[{"sku": "SOCK", "quantity": 4}])
    shown = till.points(c.id)
    assert shown["pending"] == 60 and shown["balance"] == 0
    verify_clean(runner)


def test_a_return_before_its_purchase_is_held_then_applied(till, factory, runner):
    c = factory.customer()
    r = till.client.post("/api/v1/returns", headers=till.headers, json={
        "receipt_id": "LATE-1", "return_id": "LR-1", "lines": [{"sku": "SHOE", "quantity": 1}]})
    assert r.status_code == 202 and r.get_json()["status"] == "held"
    sale = till.buy({"id": c.id}, "100.00", lines=LINES, receipt_id="LATE-1").get_json()
    assert sale["points_earned"] == 100 and sale["balance"] == 70
    replay = till.client.post("/api/v1/returns", headers=till.headers, json={
        "receipt_id": "LATE-1", "return_id": "LR-1", "lines": [{"sku": "SHOE", "quantity": 1}]})
    assert replay.status_code == 200 and replay.get_json()["status"] == "applied"
    assert replay.get_json()["points_reversed"] == 30
    verify_clean(runner)


def test_held_return_that_does_not_fit_stays_held_with_a_note(till, factory):
    till.client.post("/api/v1/returns", headers=till.headers, json={
        "receipt_id": "LATE-2", "return_id": "LR-2", "lines": [{"sku": "SHOE", "quantity": 9}]})
    till.buy(None, "100.00", lines=LINES, receipt_id="LATE-2")
    r = till.client.post("/api/v1/returns", headers=till.headers, json={
        "receipt_id": "LATE-2", "return_id": "LR-2", "lines": [{"sku": "SHOE", "quantity": 9}]})
    assert r.get_json()["status"] == "held" and "left to return" in r.get_json()["note"]


def test_bad_returns(till, factory):
    sale = till.buy(None, "100.00", lines=LINES).get_json()
    for body, field in (({"amount": "10.00", "lines": [{"sku": "SOCK", "quantity": 1}]},
                         "amount"),
                        ({"amount": "200.00"}, "amount"),
                        ({"amount": "1.234"}, "amount"),
                        ({"lines": [{"sku": "NOPE", "quantity": 1}]}, "NOPE"),
                        ({"return_id": ""}, "return_id")):
        r = till.give_back(sale["id"], expect=422, **body)
        assert field in r.get_json()["errors"], (body, r.get_json())
    assert till.give_back(999999, expect=404).status_code == 404


def test_anonymous_purchase_returned_then_claimed_earns_the_net(till, factory, runner):
    c = factory.customer()
    sale = till.buy(None, "100.00", lines=LINES).get_json()
    till.give_back(sale["id"], lines=[{"sku": "SOCK", "quantity": 4}])
    r = till.client.post(f"/api/v1/purchases/{sale['id']}/claim", headers=till.headers,
                         json={"customer": {"id": c.id}})
    assert r.status_code == 200
    assert till.points(c.id)["balance"] == 60
    assert Decimal(r.get_json()["paid"]) == Decimal("100.00")
    verify_clean(runner)


def test_returns_racing_their_sales_are_each_applied_once(live_server, till, factory,
                                                          runner):
    """Each of six sales, its return named by the receipt (the till posts it before the
    sale has reached us) and a retry of that return, all at the same moment: whichever
    comes first, every return is applied once, held or not, and every point comes back."""
    c = factory.customer()
    now = datetime.now(UTC).isoformat()
    posts = []
    for n in range(6):
        receipt = f"RACE-R{n}"
        posts.append(("/api/v1/purchases", {
            "receipt_id": receipt, "occurred_at": now, "currency": "EUR", "total": "40.00",
            "customer": {"id": c.id},
            "lines": [{"sku": "A", "quantity": 1, "unit_price": "40.00"}]}))
        posts += [("/api/v1/returns", {"receipt_id": receipt, "return_id": f"RR{n}"})] * 2
    barrier = threading.Barrier(len(posts))

    def post(item):
        path, body = item
        barrier.wait()
        return requests.post(f"{live_server}{path}", headers=till.headers, json=body,
                             timeout=60)

    with ThreadPoolExecutor(len(posts)) as pool:
        answers = list(pool.map(post, posts))
    codes: dict[str, list[int]] = {"/api/v1/purchases": [], "/api/v1/returns": []}
    for (path, _), r in zip(posts, answers, strict=True):
        codes[path].append(r.status_code)
    returns = codes["/api/v1/returns"]
    assert codes["/api/v1/purchases"] == [201] * 6, [r.text for r in answers]
    for first, second in zip(returns[::2], returns[1::2], strict=True):
        assert sorted((first, second)) in ([200, 201], [200, 202]), returns
    rows = db.session.scalars(select(PurchaseReturn)).all()
    assert len(rows) == 6 and {r.status for r in rows} == {"applied"}
    purchases = db.session.scalars(select(Purchase)).all()
    assert [(p.points_earned, p.points_reversed, p.returned_paid) for p in purchases] \
        == [(40, 40, 4000)] * 6
    assert till.points(c.id)["balance"] == 0
    verify_clean(runner)
