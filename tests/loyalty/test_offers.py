import csv
import io
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import requests
from sqlalchemy import func, select

from crm.db import db
from loyalty.coupons import ALPHABET
from loyalty.models import Coupon, Offer
from tests.helpers import verify_clean

LINES = [{"sku": "SHOE", "category": "shoes", "quantity": 2, "unit_price": "30.00"},
         {"sku": "SOCK", "category": "socks", "quantity": 4, "unit_price": "10.00"}]


@pytest.fixture
def marketing(factory):
    return factory.headers("marketing")


@pytest.fixture
def offer(till, marketing):
    def make(**body):
        body.setdefault("name", "offer")
        r = till.client.post("/api/v1/offers", headers=marketing, json=body)
        assert r.status_code == 201, r.get_json()
        return r.get_json()
    return make


@pytest.fixture
def codes(till, marketing):
    def make(offer_id, count=1, **body):
        r = till.client.post(f"/api/v1/offers/{offer_id}/coupons", headers=marketing,
                             json={"count": count, **body})
        assert r.status_code == 201, r.get_json()
        return r.get_json()["codes"]
    return make


def validate(till, code, total="100.00", lines=LINES, **extra):
    r = till.client.post("/api/v1/coupons/validate", headers=till.headers,
                         json={"code": code, "basket": {"total": total, "lines": lines},
                               **extra})
    assert r.status_code == 200, r.get_json()
    return r.get_json()


@pytest.mark.parametrize("kind, value, scope, discount, points", [
    ("percent", "10", {"categories": ["shoes"]}, "6.00", 94),
    ("amount", "15.00", {}, "15.00", 85),
    ("amount", "50.00", {"skus": ["SOCK"]}, "40.00", 60),
    ("free_item", "1", {"categories": ["socks"]}, "10.00", 90),
    ("points_multiplier", "3", {}, "0.00", 300),
    ("bonus_points", "25", {}, "0.00", 125),
])
def test_each_offer_kind_applies_in_a_purchase(till, factory, offer, codes, runner,
                                               kind, value, scope, discount, points):
    o = offer(kind=kind, value=value, **scope)
    code = codes(o["id"])[0]
    assert validate(till, code)["discount"] == discount
    c = factory.customer()
    body = till.buy({"id": c.id}, "100.00", lines=LINES, coupon_codes=[code.lower()]).get_json()
    assert body["discount"] == discount and body["points_earned"] == points
    assert body["coupons_applied"] == [{"code": code, "offer_id": o["id"], "kind": kind,
                                        "discount": discount,
                                        "bonus_points": points - 100 + int(float(discount))}]
    assert validate(till, code)["reason"] == "used"
    verify_clean(runner)


def test_coupon_and_points_together_never_pay_more_than_the_total(till, factory, offer, codes,
                                                                  admin):
    o = offer(kind="amount", value="90.00")
    c = factory.customer()
    till.client.post(f"/api/v1/customers/{c.id}/points/adjustments", headers=admin,
                     json={"points": 5000, "reason": "x"})
    till.buy({"id": c.id}, "100.00", lines=LINES, coupon_codes=codes(o["id"])[0],
             redeem_points=1001, expect=422)
    body = till.buy({"id": c.id}, "100.00", lines=LINES, coupon_codes=codes(o["id"]),
                    redeem_points=1000).get_json()
    assert body["discount"] == "100.00" and body["paid"] == "0.00"
    assert body["points_earned"] == 0


def test_every_refusal_says_why(till, factory, offer, codes, marketing):
    today = datetime.now(UTC).date()
    member, other = factory.customer(), factory.customer()
    me = {"customer": {"id": member.id}}
    assert validate(till, "NOPE")["reason"] == "not_found"
    off = offer(kind="percent", value="10", active=False)
    assert validate(till, codes(off["id"])[0])["reason"] == "inactive"
    soon = offer(kind="percent", value="10", valid_from=str(today + timedelta(days=3)))
    verdict = validate(till, codes(soon["id"])[0])
    assert verdict["reason"] == "not_yet_valid" and verdict["valid"] is False
    assert str(today + timedelta(days=3)) in verdict["message"]
    past = offer(kind="percent", value="10", valid_to=str(today - timedelta(days=1)))
    assert validate(till, codes(past["id"])[0])["reason"] == "expired"
    personal = offer(kind="percent", value="10")
    r = till.client.post(f"/api/v1/offers/{personal['id']}/coupons", headers=marketing,
                         json={"customer_id": member.id})
    mine = r.get_json()["codes"][0]
    assert validate(till, mine)["reason"] == "customer_required"
    assert validate(till, mine, customer={"id": other.id})["reason"] == "wrong_customer"
    assert validate(till, mine, **me)["valid"] is True
    once = offer(kind="percent", value="10", total_limit=1)
    a, b = codes(once["id"], count=2)
    till.buy(me["customer"], "100.00", lines=LINES, coupon_codes=[a])
    assert validate(till, a, **me)["reason"] == "used"
    assert validate(till, b, **me)["reason"] == "limit_reached"
    per_member = offer(kind="percent", value="10", per_customer_limit=1)
    a, b = codes(per_member["id"], count=2)
    till.buy(me["customer"], "100.00", lines=LINES, coupon_codes=[a])
    assert validate(till, b, **me)["reason"] == "customer_limit_reached"
    budget = offer(kind="amount", value="30.00", budget="40.00")
    a, b, c = codes(budget["id"], count=3)
    till.buy(None, "100.00", lines=LINES, coupon_codes=[a])
    assert validate(till, b)["discount"] == "10.00"  # what is left of the budget
    till.buy(None, "100.00", lines=LINES, coupon_codes=[b])
    assert validate(till, c)["reason"] == "budget_exhausted"
    dollars = offer(kind="amount", value="5.00", currency="USD")
    assert validate(till, codes(dollars["id"])[0])["reason"] == "wrong_currency"
    big = offer(kind="amount", value="5.00", min_spend="150.00")
    verdict = validate(till, codes(big["id"])[0])
    assert verdict["reason"] == "min_spend" and "150.00" in verdict["message"]
    hats = offer(kind="percent", value="10", categories=["hats"])
    assert validate(till, codes(hats["id"])[0])["reason"] == "no_eligible_items"
    solo, other_code = offer(kind="percent", value="10"), codes(offer(kind="percent",
                                                                      value="5")["id"])[0]
    verdict = validate(till, codes(solo["id"])[0], with_codes=[other_code])
    assert verdict["reason"] == "not_combinable" and other_code in verdict["message"]
    stack_a = codes(offer(kind="amount", value="5.00", stackable=True)["id"])[0]
    stack_b = codes(offer(kind="amount", value="7.00", stackable=True)["id"])[0]
    assert validate(till, stack_a, with_codes=[stack_b])["valid"] is True
    assert validate(till, stack_a, with_codes=[stack_a])["valid"] is True
    body = till.buy(None, "100.00", lines=LINES, coupon_codes=[stack_a, stack_b]).get_json()
    assert body["discount"] == "12.00"
    r = till.buy(None, "100.00", lines=LINES, coupon_codes=[stack_a], expect=422)
    assert r.get_json()["errors"]["coupon_codes"][stack_a] == ["This coupon has been used."]
    r = till.buy(None, "100.00", lines=LINES, coupon_codes=[other_code, other_code],
                 expect=422)
    assert r.get_json()["coupon_reasons"] == {other_code: "duplicate"}


def test_codes_are_unique_unambiguous_and_exportable(till, offer, marketing):
    o = offer(kind="percent", value="10")
    r = till.client.post(f"/api/v1/offers/{o['id']}/coupons", headers=marketing,
                         json={"count": 500, "prefix": "XMAS-", "length": 8})
    made = r.get_json()
    assert made["count"] == 500 and len(set(made["codes"])) == 500
    assert all(c.startswith("XMAS-") and len(c) == 13 and set(c[5:]) <= set(ALPHABET)
               for c in made["codes"])
    listed = till.client.get(f"/api/v1/offers/{o['id']}/coupons?page_size=100&page=5",
                             headers=marketing)
    assert len(listed.get_json()["items"]) == 100
    assert listed.get_json()["items"][0]["state"] == "active"
    exported = till.client.get(f"/api/v1/offers/{o['id']}/coupons?format=csv&batch="
                               f"{made['batch']}", headers=marketing)
    assert exported.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
    assert sorted(r["code"] for r in rows) == sorted(made["codes"])
    for body in ({"count": 0}, {"count": 100_001}, {"count": 5, "prefix": "x y"},
                 {"count": 5, "length": 3}, {}, {"count": 1, "customer_id": 1}):
        assert till.client.post(f"/api/v1/offers/{o['id']}/coupons", headers=marketing,
                                json=body).status_code == 422, body
    assert till.client.post("/api/v1/offers/999/coupons", headers=marketing,
                            json={"count": 1}).status_code == 404


def test_one_code_used_by_many_tills_at_once_is_used_once(live_server, till, factory, offer,
                                                          codes):
    code = codes(offer(kind="amount", value="5.00")["id"])[0]

    def use(n):
        body = {"receipt_id": f"C-{n}", "occurred_at": datetime.now(UTC).isoformat(),
                "currency": "EUR", "total": "20.00", "coupon_codes": [code],
                "lines": [{"sku": "A", "quantity": 1, "unit_price": "20.00"}]}
        return requests.post(f"{live_server}/api/v1/purchases", headers=till.headers,
                             json=body, timeout=30)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(use, range(8)))
    codes_seen = sorted(r.status_code for r in answers)
    assert codes_seen.count(201) == 1 and set(codes_seen) <= {201, 409, 422}, codes_seen
    assert db.session.scalar(select(Coupon.uses).where(Coupon.code == code)) == 1
    assert db.session.scalar(select(Offer.uses)) == 1


def test_full_return_gives_the_coupon_back_partial_does_not(till, factory, offer, codes):
    o = offer(kind="amount", value="10.00", min_spend="80.00")
    a, b = codes(o["id"], count=2)
    sale = till.buy(None, "100.00", lines=LINES, coupon_codes=[a]).get_json()
    back = till.give_back(sale["id"], lines=[{"sku": "SOCK", "quantity": 4}]).get_json()
    assert back["amount"] == "36.00"  # what was paid for the socks, discount spread
    assert validate(till, a)["reason"] == "used"
    till.give_back(sale["id"])
    assert validate(till, a)["valid"] is True
    assert db.session.scalar(select(Offer.uses)) == 0
    sale = till.buy(None, "100.00", lines=LINES, coupon_codes=[b]).get_json()
    till.client.patch(f"/api/v1/offers/{o['id']}", headers=factory.headers("marketing"),
                      json={"valid_to": str(date.today() - timedelta(days=1))})
    till.give_back(sale["id"])
    assert validate(till, b)["reason"] == "expired"
    assert db.session.scalar(select(Coupon.uses).where(Coupon.code == b)) == 1


def test_members_usable_coupons(till, factory, offer, marketing):
    c = factory.customer()
    live = offer(kind="percent", value="10")
    gone = offer(kind="percent", value="10", valid_to="2020-01-01")
    for o in (live, gone, live):
        till.client.post(f"/api/v1/offers/{o['id']}/coupons", headers=marketing,
                         json={"customer_id": c.id})
    listed = till.client.get(f"/api/v1/customers/{c.id}/coupons", headers=till.headers)
    items = listed.get_json()["items"]
    assert len(items) == 2 and {i["offer"]["id"] for i in items} == {live["id"]}
    till.buy({"id": c.id}, "100.00", lines=LINES, coupon_codes=[items[0]["code"]])
    listed = till.client.get(f"/api/v1/customers/{c.id}/coupons", headers=till.headers)
    assert len(listed.get_json()["items"]) == 1


def test_guessing_codes_is_rate_limited_per_key(till, app, offer, codes):
    good = codes(offer(kind="percent", value="10", stackable=True)["id"], count=5)
    app.config["COUPON_GUESS_LIMIT"] = "3 per minute"
    try:
        for code in good:
            validate(till, code)  # known codes do not count
        for n in range(3):
            assert validate(till, f"GUESS{n}")["reason"] == "not_found"
        r = till.client.post("/api/v1/coupons/validate", headers=till.headers,
                             json={"code": "GUESS9", "basket": {"total": "1.00", "lines": [
                                 {"sku": "A", "quantity": 1, "unit_price": "1.00"}]}})
        assert r.status_code == 429 and r.mimetype == "application/problem+json"
        r = till.buy(None, "1.00", coupon_codes=["GUESS10"], expect=429)
    finally:
        app.config["COUPON_GUESS_LIMIT"] = "30 per minute"


def test_a_sale_counts_against_the_keys_own_limit_and_codes_against_guessing(till, app):
    """The till's everyday sale is one rate-limit check, the key's own; a sale naming
    coupon codes also spends from the guessing budget when a code is unknown."""
    app.config.update(RATELIMIT_DEFAULT="4 per minute", COUPON_GUESS_LIMIT="1 per minute")
    try:
        till.buy(None, "1.00")
        till.buy(None, "1.00", coupon_codes=["GUESS1"], expect=422)  # unknown: counted
        till.buy(None, "1.00", coupon_codes=["GUESS2"], expect=429)  # guessing spent
        till.buy(None, "1.00")  # a sale without codes is not a guess
        r = till.buy(None, "1.00", expect=429)  # the key's own limit, reached
        assert r.mimetype == "application/problem+json"
    finally:
        app.config.update(RATELIMIT_DEFAULT="100000 per minute",
                          COUPON_GUESS_LIMIT="30 per minute")


def test_offer_validation(till, marketing):
    for body, field in (({"kind": "percent", "value": "150"}, "value"),
                        ({"kind": "amount", "value": "1.234"}, "value"),
                        ({"kind": "free_item", "value": "1.5"}, "value"),
                        ({"kind": "points_multiplier", "value": "1"}, "value"),
                        ({"kind": "gift", "value": "1"}, "kind"),
                        ({"kind": "percent", "value": "5", "min_spend": "x"}, "min_spend"),
                        ({"kind": "percent", "value": "5", "valid_from": "2026-02-01",
                          "valid_to": "2026-01-01"}, "valid_to")):
        r = till.client.post("/api/v1/offers", headers=marketing, json={"name": "x", **body})
        assert r.status_code == 422 and field in r.get_json()["errors"], (body, r.get_json())
    assert db.session.scalar(select(func.count()).select_from(Offer)) == 0
    assert till.client.post("/api/v1/offers", headers=till.headers,
                            json={"name": "x", "kind": "percent", "value": "5"}).status_code \
        == 403


def test_a_claimed_purchase_gets_its_points_coupon_bonus(till, factory, offer, codes):
    code = codes(offer(kind="bonus_points", value="25")["id"])[0]
    sale = till.buy(None, "100.00", lines=LINES, coupon_codes=[code]).get_json()
    c = factory.customer()
    r = till.client.post(f"/api/v1/purchases/{sale['id']}/claim", headers=till.headers,
                         json={"customer": {"id": c.id}})
    assert r.get_json()["points_earned"] == 125
    assert r.get_json()["coupons_applied"][0]["bonus_points"] == 25
    assert till.points(c.id)["balance"] == 125


def test_personal_coupons_in_bulk_survive_code_collisions(factory, program):
    """One-letter codes: 20 people drawing from 31 letters collide within the batch, so
    the batch is written again around the taken codes until everyone has one."""
    from crm.db import db
    from loyalty import coupons

    people = [factory.customer().id for _ in range(20)]
    db.session.rollback()
    offer = coupons.create_offer({"name": "x", "kind": "percent", "value": Decimal(5),
                                  "currency": "EUR"})
    made = coupons.issue_personal(offer, people, length=1)
    db.session.commit()
    assert sorted(made) == sorted(people)
    assert len({code for _, code in made.values()}) == 20
