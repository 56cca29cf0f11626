"""Online-to-offline flows (issue 18, points 1-5): returns taken at any store's till and
by the shop, held returns that expire, totals that must add up, coupon checks by total,
receipts and order history. Through the HTTP API on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import requests
from sqlalchemy import func, select, update

from crm.db import db, utcnow
from crm.models import SecurityAlert
from loyalty import settings
from loyalty.models import Purchase, PurchaseReturn
from tests.helpers import Till, verify_clean

LINES = [{"sku": "SHOE", "category": "shoes", "quantity": 2, "unit_price": "30.00"},
         {"sku": "SOCK", "category": "socks", "quantity": 4, "unit_price": "10.00"}]


@pytest.fixture
def other_till(client, factory, program) -> Till:
    """A till of another street store in the same currency as ``till`` (EUR)."""
    store = factory.store("LYS01", currency="EUR", timezone="Europe/Paris")
    return Till(client, factory.headers("pos", store=store.code), store.code)


@pytest.fixture
def web(factory, program):
    return factory.store("WEB01", currency="EUR", channel="online")


def _returns_anywhere(on: bool) -> None:
    settings.update_program({"returns_anywhere": on})
    db.session.commit()


def _post_return(client, headers, body, purchase_id=None):
    url = (f"/api/v1/purchases/{purchase_id}/returns" if purchase_id is not None
           else "/api/v1/returns")
    return client.post(url, headers=headers, json=body)


# --- 1. return anywhere --------------------------------------------------------------


def test_a_sale_is_returned_at_another_stores_till_and_recorded_there(
        client, till, other_till, factory, runner, admin):
    c = factory.customer()
    sale = till.buy({"id": c.id}, "100.00", lines=LINES).get_json()
    back = other_till.give_back(sale["id"], lines=[{"sku": "SHOE", "quantity": 1}],
                                return_id="LYS-R1").get_json()
    assert back["status"] == "applied" and back["amount"] == "30.00"
    assert back["sale_store"] == till.store and back["taken_at_store"] == other_till.store
    assert back["points_reversed"] == 30 and back["taken_by_key"] is not None
    row = db.session.get(PurchaseReturn, back["id"])
    assert row.taken_store_id != row.store_id
    # By receipt at the other store too, naming the sale's store.
    by_receipt = _post_return(client, other_till.headers, {
        "store_code": till.store, "receipt_id": sale["receipt_id"], "return_id": "LYS-R2",
        "lines": [{"sku": "SOCK", "quantity": 1}]})
    assert by_receipt.status_code == 201, by_receipt.get_json()
    assert by_receipt.get_json()["taken_at_store"] == other_till.store
    assert till.points(c.id)["balance"] == 60
    # The same return posted again is the same answer; another body under its id, 409.
    again = other_till.give_back(sale["id"], lines=[{"sku": "SHOE", "quantity": 1}],
                                 return_id="LYS-R1", expect=200)
    assert again.get_json() == back
    other_till.give_back(sale["id"], amount="1.00", return_id="LYS-R1", expect=409)
    # Return ids are the taking store's: the sale's own till may use the same one.
    own = till.give_back(sale["id"], amount="5.00", return_id="LYS-R1").get_json()
    assert own["taken_at_store"] == till.store and own["amount"] == "5.00"
    # The receipt, the timeline and the console say where each return happened.
    receipt = client.get(f"/api/v1/purchases/{sale['id']}", headers=other_till.headers)
    assert receipt.status_code == 200
    assert [(r["return_id"], r["taken_at_store"]) for r in receipt.get_json()["returns"]] == [
        ("LYS-R1", "LYS01"), ("LYS-R2", "LYS01"), ("LYS-R1", till.store)]
    timeline = client.get(f"/api/v1/customers/{c.id}/timeline", headers=admin).get_json()
    labels = [i["label"] for i in timeline["items"] if i["type"] == "return"]
    assert sorted(labels) == sorted([
        f"return LYS-R1 of receipt {sale['receipt_id']} taken back at LYS01",
        f"return LYS-R2 of receipt {sale['receipt_id']} taken back at LYS01",
        f"return LYS-R1 of receipt {sale['receipt_id']} taken back at {till.store}"])
    verify_clean(runner)


def test_the_shop_takes_back_a_street_sale_and_a_till_an_online_order(
        client, till, web, factory, runner):
    c = factory.customer()
    sale = till.buy({"id": c.id}, "40.00").get_json()
    shop = factory.headers("shop")
    r = _post_return(client, shop, {"return_id": "WEB-R1"}, sale["id"])
    assert r.status_code == 201, r.get_json()
    assert r.get_json()["taken_at_store"] == "WEB01"  # the online store in EUR
    order = client.post("/api/v1/purchases", headers=shop, json={
        "store_code": "WEB01", "receipt_id": "ORDER-1", "occurred_at": utcnow().isoformat(),
        "currency": "EUR", "total": "25.00", "customer": {"id": c.id},
        "lines": [{"sku": "A", "quantity": 1, "unit_price": "25.00"}]})
    assert order.status_code == 201, order.get_json()
    at_till = _post_return(client, till.headers, {"store_code": "WEB01",
                                                  "receipt_id": "ORDER-1",
                                                  "return_id": "PAR-R9"})
    assert at_till.status_code == 201, at_till.get_json()
    assert at_till.get_json()["sale_store"] == "WEB01"
    assert at_till.get_json()["taken_at_store"] == till.store
    assert till.points(c.id)["balance"] == 0
    verify_clean(runner)


def test_returns_anywhere_off_keeps_returns_at_the_sales_store(
        client, till, other_till, web, factory):
    c = factory.customer()
    sale = till.buy({"id": c.id}, "40.00").get_json()
    _returns_anywhere(False)
    r = other_till.give_back(sale["id"], expect=403)
    assert r.mimetype == "application/problem+json"
    r = _post_return(client, other_till.headers, {"store_code": till.store,
                                                  "receipt_id": sale["receipt_id"],
                                                  "return_id": "X1"})
    assert r.status_code == 403
    shop = factory.headers("shop")
    assert _post_return(client, shop, {"return_id": "W1"}, sale["id"]).status_code == 403
    assert client.get(f"/api/v1/purchases/{sale['id']}",
                      headers=other_till.headers).status_code == 403
    assert db.session.scalar(select(func.count()).select_from(PurchaseReturn)) == 0
    till.give_back(sale["id"])  # its own till still takes it back
    _returns_anywhere(True)
    assert client.get(f"/api/v1/purchases/{sale['id']}",
                      headers=other_till.headers).status_code == 200


def test_a_refund_in_another_currency_is_a_422_and_changes_nothing(
        client, till, factory, runner):
    c = factory.customer()
    sale = till.buy({"id": c.id}, "40.00").get_json()
    london = factory.store("LON01", currency="GBP", timezone="Europe/London")
    gbp_till = factory.headers("pos", store=london.code)
    r = _post_return(client, gbp_till, {"return_id": "L1"}, sale["id"])
    assert r.status_code == 422 and r.mimetype == "application/problem+json"
    assert "currency" in r.get_json()["errors"] and "GBP" in r.get_json()["detail"]
    r = _post_return(client, gbp_till, {"store_code": till.store,
                                        "receipt_id": "NOT-YET", "return_id": "L2"})
    assert r.status_code == 422  # held returns too: the sale's store says its currency
    r = till.give_back(sale["id"], currency="USD", expect=422)
    assert r.get_json()["errors"]["currency"] == ["Must be EUR, the sale's."]
    assert db.session.scalar(select(func.count()).select_from(PurchaseReturn)) == 0
    assert till.points(c.id)["balance"] == 40
    till.give_back(sale["id"], currency="EUR")
    verify_clean(runner)


def test_returns_at_two_stores_racing_lose_nothing(live_server, till, other_till, factory,
                                                   runner):
    """Both stores take back items of one sale at the same moment, some posts retried:
    every return is applied once, the refunds add up, the points with them."""
    c = factory.customer()
    sale = till.buy({"id": c.id}, "100.00", lines=[
        {"sku": "A", "quantity": 10, "unit_price": "10.00"}]).get_json()
    assert sale["points_earned"] == 100
    posts = [(t.headers, f"{t.store}-{i}") for i in range(4) for t in (till, other_till)]
    posts += posts[:4]  # retries of the first ones, racing their originals
    barrier = threading.Barrier(len(posts))

    def post(item):
        headers, return_id = item
        barrier.wait()
        return requests.post(f"{live_server}/api/v1/purchases/{sale['id']}/returns",
                             headers=headers, json={"return_id": return_id,
                                                    "lines": [{"sku": "A", "quantity": 1}]},
                             timeout=60)

    with ThreadPoolExecutor(len(posts)) as pool:
        answers = list(pool.map(post, posts))
    codes = sorted(r.status_code for r in answers)
    assert codes.count(201) == 8 and codes.count(200) == 4, [r.text for r in answers]
    rows = db.session.scalars(select(PurchaseReturn)).all()
    assert len(rows) == 8 and all(r.status == "applied" for r in rows)
    assert {r.taken_store_id for r in rows} == {till_store_id(till), till_store_id(other_till)}
    purchase = db.session.get(Purchase, sale["id"], populate_existing=True)
    assert purchase.returned_paid == 8000 and purchase.points_reversed == 80
    assert sum(r.returned_paid for r in rows) == 8000
    assert till.points(c.id)["balance"] == 20
    verify_clean(runner)


def till_store_id(till: Till) -> int:
    from crm.models import Store
    return db.session.scalar(select(Store.id).where(Store.code == till.store))


# --- 2. held returns that expire ------------------------------------------------------


def test_a_held_return_expires_is_listed_alerted_counted_and_still_applied_late(
        client, app, till, other_till, factory, runner, admin, caplog):
    c = factory.customer()
    held = _post_return(client, other_till.headers, {
        "store_code": till.store, "receipt_id": "LATE-1", "return_id": "H1"})
    assert held.status_code == 202 and held.get_json()["status"] == "held"
    young = _post_return(client, till.headers, {"receipt_id": "LATE-2", "return_id": "H2"})
    assert young.status_code == 202
    db.session.execute(update(PurchaseReturn).where(PurchaseReturn.return_id == "H1")
                       .values(created_at=utcnow() - timedelta(days=8)))
    db.session.commit()
    listed = client.get("/api/v1/returns?status=held", headers=admin).get_json()["items"]
    assert [r["return_id"] for r in listed] == ["H2", "H1"]  # newest first

    with caplog.at_level("WARNING", logger="loyalty.held_returns"):
        result = runner.invoke(args=["scheduler", "run-job", "expire-held-returns"])
    assert result.exit_code == 0 and result.output.strip() == "1", result.output
    again = runner.invoke(args=["loyalty", "expire-held-returns"])
    assert "expired 0 held return(s)" in again.output  # idempotent
    expired = client.get("/api/v1/returns?status=expired", headers=admin).get_json()["items"]
    assert [(r["return_id"], r["status"], r["taken_at_store"]) for r in expired] == [
        ("H1", "expired", other_till.store)]
    assert expired[0]["expired_at"] is not None
    assert [r["return_id"] for r in client.get("/api/v1/returns?status=held",
                                               headers=admin).get_json()["items"]] == ["H2"]
    # The alert: one per store of the sale, with ids and counts, nothing personal.
    alerts = client.get("/api/v1/security/alerts", headers=admin).get_json()["items"]
    alert = next(a for a in alerts if a["rule"] == "held_return_expired")
    assert alert["subject"] == f"store:{till.store}" and str(expired[0]["id"]) in alert["detail"]
    lines = [r for r in caplog.records if r.name == "loyalty.held_returns"]
    assert len(lines) == 1 and lines[0].fields["expired"] == 1
    assert lines[0].fields["return_ids"] == [expired[0]["id"]]
    metrics = client.get("/metrics").get_data(as_text=True)
    assert "crm_held_returns_expired_total 1.0" in metrics
    assert 'crm_returns_waiting{status="held"} 1.0' in metrics
    # A till sees the returns of its store; another store's till does not see H2.
    mine = client.get("/api/v1/returns", headers=other_till.headers).get_json()["items"]
    assert [r["return_id"] for r in mine] == ["H1"]
    assert client.get("/api/v1/returns?status=lost", headers=admin).status_code == 422

    # The sale arrives after all: the expired return is applied, its points come back.
    sale = till.buy({"id": c.id}, "30.00", receipt_id="LATE-1").get_json()
    assert sale["balance"] == 0
    row = db.session.scalar(select(PurchaseReturn).where(PurchaseReturn.return_id == "H1"))
    assert row.status == "applied" and "after it had expired" in row.note
    assert row.expired_at is not None  # still counted
    assert "crm_held_returns_expired_total 1.0" in client.get("/metrics").get_data(
        as_text=True)
    verify_clean(runner)


def test_held_return_days_is_configurable(app, client, till, runner, monkeypatch):
    assert app.config["HELD_RETURN_DAYS"] == 7
    _post_return(client, till.headers, {"receipt_id": "NEVER", "return_id": "H9"})
    assert "expired 0" in runner.invoke(args=["loyalty", "expire-held-returns"]).output
    monkeypatch.setitem(app.config, "HELD_RETURN_DAYS", 0)
    assert "expired 1" in runner.invoke(args=["loyalty", "expire-held-returns"]).output
    assert db.session.scalar(select(func.count()).select_from(SecurityAlert)) == 1


# --- 3. totals that add up -------------------------------------------------------------


def test_a_total_far_from_its_lines_is_a_422_naming_the_difference(till, factory):
    c = factory.customer()
    line = [{"sku": "A", "quantity": 1, "unit_price": "10.00"}]
    r = till.buy({"id": c.id}, "5000.00", lines=line, expect=422).get_json()
    assert r["difference"] == "4990.00" and r["expected_total"] == "10.00"
    assert "off by 4990.00" in r["detail"] and "total" in r["errors"]
    r = till.buy({"id": c.id}, "0.00", lines=line, expect=422).get_json()
    assert r["difference"] == "-10.00"
    # One minor unit per line is rounding; two lines allow two, not three.
    two = [{"sku": "A", "quantity": 3, "unit_price": "3.33"},
           {"sku": "B", "quantity": 1, "unit_price": "1.00"}]
    till.buy({"id": c.id}, "11.01", lines=two)
    till.buy({"id": c.id}, "10.97", lines=two)
    till.buy({"id": c.id}, "11.02", lines=two, expect=422)
    till.buy({"id": c.id}, "10.96", lines=two, expect=422)
    assert db.session.scalar(select(func.count()).select_from(Purchase)) == 2
    assert till.points(c.id)["balance"] == 21


def test_a_receipt_recorded_before_totals_were_checked_still_replays(client, till, factory):
    """A till retrying a sale recorded before the check (its total off) gets the first
    answer again, not a 422."""
    from loyalty.purchases import request_hash
    from loyalty.schemas import PurchaseInSchema

    c = factory.customer()
    first = till.buy({"id": c.id}, "10.00", receipt_id="OLD-1",
                     occurred_at="2026-11-01T10:00:00+00:00").get_json()
    body = {"receipt_id": "OLD-1", "occurred_at": "2026-11-01T10:00:00+00:00",
            "currency": "EUR", "total": "5000.00", "customer": {"id": c.id},
            "lines": [{"sku": "SKU-1", "quantity": 1, "unit_price": "10.00"}]}
    db.session.execute(update(Purchase).where(Purchase.id == first["id"]).values(
        request_hash=request_hash(PurchaseInSchema().load(body))))
    db.session.commit()
    again = client.post("/api/v1/purchases", headers=till.headers, json=body)
    assert again.status_code == 200, again.get_json()
    assert again.get_json() == first
    body["receipt_id"] = "NEW-1"
    assert client.post("/api/v1/purchases", headers=till.headers,
                       json=body).status_code == 422
    assert db.session.scalar(select(func.count()).select_from(Purchase)) == 1


def test_tax_and_markdowns_count_in_the_total_and_points_are_never_on_tax(
        client, till, factory, runner):
    c = factory.customer()
    lines = [{"sku": "A", "quantity": 2, "unit_price": "50.00"}]
    # 100.00 of goods, a 10.00 markdown at the till, 18.00 tax: 108.00 paid.
    sale = till.buy({"id": c.id}, "108.00", lines=lines, tax="18.00",
                    adjustments="-10.00").get_json()
    assert sale["points_earned"] == 90  # the 90.00 paid for the goods, not the tax
    assert sale["tax"] == "18.00" and sale["adjustments"] == "-10.00"
    assert sale["paid"] == "108.00"
    till.buy({"id": c.id}, "108.00", lines=lines, tax="18.00", expect=422)  # no markdown
    # A positive adjustment (delivery) is in the total and earns nothing.
    fee = till.buy({"id": c.id}, "105.00", lines=lines, adjustments="5.00").get_json()
    assert fee["points_earned"] == 100
    r = till.buy({"id": c.id}, "1.00", lines=lines, adjustments="--1", expect=422)
    assert "adjustments" in r.get_json()["errors"]
    receipt = client.get(f"/api/v1/purchases/{sale['id']}", headers=till.headers).get_json()
    assert receipt["tax"] == "18.00" and receipt["adjustments"] == "-10.00"
    verify_clean(runner)


def test_points_after_coupons_and_points_are_on_the_lines_paid(client, till, factory,
                                                               runner):
    c = factory.customer()
    till.buy({"id": c.id}, "50.00")  # 50 points to spend
    marketing = factory.headers("marketing")
    offer = client.post("/api/v1/offers", headers=marketing, json={
        "name": "5 off", "kind": "amount", "value": "5.00", "currency": "EUR",
        "stackable": True}).get_json()
    codes = client.post(f"/api/v1/offers/{offer['id']}/coupons", headers=marketing,
                        json={"count": 1}).get_json()["codes"]
    lines = [{"sku": "A", "quantity": 1, "unit_price": "100.00"}]
    sale = till.buy({"id": c.id}, "110.00", lines=lines, tax="20.00", adjustments="-10.00",
                    coupon_codes=codes[:1], redeem_points=50).get_json()
    # Goods 100 - markdown 10 = 90; less the 5.00 coupon and 0.50 of points: 84.50.
    assert sale["discount"] == "5.50" and sale["paid"] == "104.50"
    assert sale["points_earned"] == 84
    verify_clean(runner)


def test_earning_rules_count_the_lines_paid_not_tax_nor_charges():
    """The pure earning rules: a rule's min_spend and multiplier see what was paid for
    the lines, after the markdown, never the tax or a delivery charge."""
    from datetime import UTC, datetime
    from decimal import Decimal
    from types import SimpleNamespace

    from loyalty.earning import Basket, Line, Member, points_for

    program = SimpleNamespace(points_per_unit=Decimal(1), rounding="floor")
    double_shoes = SimpleNamespace(
        id=1, kind="multiplier", value=Decimal(2), skus=[], categories=["shoes"],
        store_codes=[], weekdays=[], valid_from=None, valid_to=None, first_purchase=False,
        birthday_month=False, min_spend=5000)
    lines = [Line("SHOE", "shoes", 1, 6000), Line("TEA", "tea", 1, 4000)]
    # 100.00 of goods - 10.00 markdown + 20.00 tax + 5.00 delivery = 115.00 paid.
    basket = Basket("S1", datetime(2026, 5, 1, tzinfo=UTC), 2, 11500, 11500, lines,
                    tax=2000, charges=500)
    assert basket.paid_for_lines == 9000
    earned = points_for(basket, program, Member(), [double_shoes], {})
    assert earned.base == 90 and earned.awards == {1: 54}  # shoes: 60% of 90.00
    # With 81.00 paid for the lines, the shoes' share (48.60) misses the 50.00 minimum.
    lower = Basket("S1", basket.local_time, 2, 10100, 10100, lines, tax=2000)
    assert points_for(lower, program, Member(), [double_shoes], {}).awards == {}


# --- 4. a coupon check with only a total ------------------------------------------------


def test_a_coupon_is_checked_against_a_total_without_lines(client, till, factory):
    marketing = factory.headers("marketing")

    def offer(**fields):
        made = client.post("/api/v1/offers", headers=marketing, json={
            "name": fields.pop("name"), "currency": "EUR", "stackable": False, **fields})
        assert made.status_code == 201, made.get_json()
        batch = client.post(f"/api/v1/offers/{made.get_json()['id']}/coupons",
                            headers=marketing, json={"count": 1}).get_json()
        return batch["codes"][0]

    ten = offer(name="10%", kind="percent", value="10", min_spend="50.00")
    shoes = offer(name="Shoes 20%", kind="percent", value="20", categories=["shoes"])
    free = offer(name="Free sock", kind="free_item", value="1", skus=["SOCK"])

    def check(code, total):
        r = client.post("/api/v1/coupons/validate", headers=till.headers, json={
            "code": code, "basket": {"total": total, "lines": []}})
        assert r.status_code == 200, r.get_json()
        return r.get_json()

    verdict = check(ten, "100.00")
    assert verdict["valid"] is True and verdict["discount"] == "10.00"
    assert verdict["offer"]["name"] == "10%"
    assert check(ten, "40.00")["reason"] == "min_spend"
    assert check(shoes, "100.00")["reason"] == "no_eligible_items"
    assert check(free, "100.00")["reason"] == "no_eligible_items"
    r = client.post("/api/v1/coupons/validate", headers=till.headers,
                    json={"code": ten, "basket": {"total": "80.00"}})
    assert r.status_code == 200 and r.get_json()["discount"] == "8.00"


# --- 5. receipts and order history ------------------------------------------------------


def test_receipts_and_order_history_newest_first(client, till, other_till, factory, web):
    c, other = factory.customer(), factory.customer()
    old = till.buy({"id": c.id}, "100.00", lines=LINES,
                   occurred_at=utcnow() - timedelta(days=3)).get_json()
    new = other_till.buy({"id": c.id}, "20.00").get_json()
    middle = till.buy({"id": c.id}, "30.00", occurred_at=utcnow() - timedelta(days=1),
                      tax="5.00", lines=[{"sku": "T", "quantity": 1,
                                          "unit_price": "25.00"}]).get_json()
    till.buy({"id": other.id}, "10.00")
    other_till.give_back(old["id"], lines=[{"sku": "SOCK", "quantity": 2}], return_id="X")
    for headers in (till.headers, other_till.headers, factory.headers("shop"),
                    factory.headers("marketing")):
        r = client.get(f"/api/v1/customers/{c.id}/purchases?page_size=2", headers=headers)
        assert r.status_code == 200, r.get_json()
        assert [p["id"] for p in r.get_json()["items"]] == [new["id"], middle["id"]]
        assert json.loads(r.headers["X-Pagination"])["total"] == 3
    page2 = client.get(f"/api/v1/customers/{c.id}/purchases?page=2&page_size=2",
                       headers=till.headers).get_json()["items"]
    assert [p["id"] for p in page2] == [old["id"]]
    receipt = page2[0]
    assert receipt["store_code"] == till.store and receipt["total"] == "100.00"
    assert [(ln["sku"], ln["quantity"], ln["returned_quantity"]) for ln in receipt["lines"]] \
        == [("SHOE", 2, 0), ("SOCK", 4, 2)]
    assert receipt["returns"][0]["taken_at_store"] == other_till.store
    assert receipt["returned"] == "20.00" and receipt["points_reversed"] == 20
    assert receipt["points_earned"] == 100 and receipt["coupons_applied"] == []
    one = client.get(f"/api/v1/purchases/{old['id']}", headers=factory.headers("shop"))
    assert one.get_json() == receipt
    assert client.get("/api/v1/purchases/999999", headers=till.headers).status_code == 404
    assert client.get("/api/v1/customers/999999/purchases",
                      headers=till.headers).status_code == 404


def test_a_page_of_history_is_a_few_queries(app, client, till, factory):
    """No query per purchase: count, the page, its lines, its returns (and the key)."""
    from sqlalchemy import event
    c = factory.customer()
    for _ in range(12):
        sale = till.buy({"id": c.id}, "100.00", lines=LINES).get_json()
        till.give_back(sale["id"], amount="1.00")
    statements = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        r = client.get(f"/api/v1/customers/{c.id}/purchases?page_size=10",
                       headers=till.headers)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert r.status_code == 200 and len(r.get_json()["items"]) == 10
    queries = [s for s in statements if "purchase" in s.lower()]
    print(f"\nhistory page of 10: {len(queries)} queries on purchases, lines, returns")
    assert len(queries) <= 4, queries
