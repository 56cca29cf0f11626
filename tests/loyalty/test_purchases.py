from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from itertools import pairwise

import pytest
import requests
from sqlalchemy import event, func, select

from crm.db import db
from loyalty.models import LedgerEntry, Purchase, PurchaseLine
from tests.helpers import verify_clean


def test_member_found_by_each_identifier_earns_on_what_was_paid(till, factory, runner):
    c = factory.customer(email="ada@example.com", phone="+33612345678", card_number="CARD01")
    for ref in ({"id": c.id}, {"email": "ADA@example.com"}, {"phone": "+33 6 12 34 56 78"},
                {"card_number": "card01"}):
        body = till.buy(ref, "12.99").get_json()
        assert body["customer_id"] == c.id and body["points_earned"] == 12
    body = till.buy({"id": c.id}, "1.00")
    assert body.get_json()["balance"] == 49
    assert body.get_json()["paid"] == "1.00" and body.get_json()["tier"] is None
    assert till.points(c.id)["balance"] == 49
    verify_clean(runner)


def test_lines_that_do_not_earn_are_left_out(till, factory):
    c = factory.customer()
    body = till.buy({"id": c.id}, "80.00", lines=[
        {"sku": "A", "quantity": 2, "unit_price": "20.00"},
        {"sku": "GIFTCARD", "quantity": 1, "unit_price": "40.00", "earns": False},
    ]).get_json()
    assert body["points_earned"] == 40


def test_anonymous_purchase_is_claimed_later(till, factory, runner):
    c = factory.customer(phone="+33612345678")
    unknown = till.buy({"email": "nobody@example.com"}, "30.00").get_json()
    assert unknown["customer_id"] is None and unknown["points_earned"] == 0
    anonymous = till.buy(None, "20.00").get_json()
    assert anonymous["customer_id"] is None and anonymous["balance"] is None

    url = f"/api/v1/purchases/{anonymous['id']}/claim"
    r = till.client.post(url, headers=till.headers, json={"customer": {"phone": "0612345678"}})
    assert r.status_code == 422  # read as a US number: not valid
    r = till.client.post(url, headers=till.headers,
                         json={"customer": {"phone": "+33612345678"}})
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["customer_id"] == c.id and r.get_json()["points_earned"] == 20
    again = till.client.post(url, headers=till.headers, json={"customer": {"id": c.id}})
    assert again.status_code == 200 and again.get_json() == r.get_json()
    other = factory.customer()
    assert till.client.post(url, headers=till.headers,
                            json={"customer": {"id": other.id}}).status_code == 409
    assert till.client.post(url, headers=till.headers,
                            json={"customer": {"id": 999999}}).status_code == 404
    assert till.points(c.id)["balance"] == 20
    verify_clean(runner)


def test_same_receipt_answers_the_same_and_another_body_conflicts(till, factory):
    c = factory.customer()
    when = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    first = till.buy({"id": c.id}, "50.00", receipt_id="T-1", occurred_at=when)
    again = till.buy({"id": c.id}, "50.00", receipt_id="T-1", occurred_at=when, expect=200)
    assert again.get_json() == first.get_json()
    other = till.buy({"id": c.id}, "60.00", receipt_id="T-1", occurred_at=when, expect=409)
    assert other.mimetype == "application/problem+json"
    assert db.session.scalar(select(func.count()).select_from(LedgerEntry)) == 1
    assert till.points(c.id)["balance"] == 50


def test_concurrent_retries_of_one_receipt_earn_once(live_server, till, factory, runner):
    c = factory.customer()
    body = {"receipt_id": "RACE-1", "occurred_at": datetime.now(UTC).isoformat(),
            "currency": "EUR", "total": "25.00", "customer": {"id": c.id},
            "lines": [{"sku": "A", "quantity": 1, "unit_price": "25.00"}]}

    def post(_):
        return requests.post(f"{live_server}/api/v1/purchases", headers=till.headers,
                             json=body, timeout=30)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(post, range(12)))
    codes = sorted(r.status_code for r in answers)
    assert codes.count(201) == 1 and codes.count(200) == 11, codes
    assert len({r.text for r in answers}) == 1
    assert db.session.scalar(select(func.count()).select_from(Purchase)) == 1
    assert till.points(c.id)["balance"] == 25
    verify_clean(runner)


def test_store_binding_and_currency(client, till, factory):
    factory.store("LON01", currency="GBP", timezone="Europe/London")
    assert till.buy(None, store_code="LON01", expect=403).status_code == 403
    r = till.buy(None, currency="USD", expect=422)
    assert "currency" in r.get_json()["errors"]
    shop = factory.headers("shop")
    body = {"receipt_id": "W1", "occurred_at": datetime.now(UTC).isoformat(),
            "currency": "GBP", "total": "5.00",
            "lines": [{"sku": "A", "quantity": 1, "unit_price": "5.00"}]}
    r = client.post("/api/v1/purchases", headers=shop, json=body)
    assert r.status_code == 422 and "store_code" in r.get_json()["errors"]
    r = client.post("/api/v1/purchases", headers=shop, json={**body, "store_code": "LON01"})
    assert r.status_code == 403  # a street store's sales come from its own tills
    factory.store("WEB01", currency="GBP", timezone="Europe/London", channel="online")
    r = client.post("/api/v1/purchases", headers=shop, json={**body, "store_code": "WEB01"})
    assert r.status_code == 201
    r = client.post("/api/v1/purchases", headers=factory.headers("marketing"),
                    json={**body, "store_code": "WEB01"})
    assert r.status_code == 403


@pytest.mark.parametrize("change, field", [
    ({"total": "12.345"}, "total"),
    ({"total": 12.5}, "total"),
    ({"total": "-1"}, "total"),
    ({"lines": []}, "lines"),
    ({"lines": [{"sku": "A", "quantity": 0, "unit_price": "1.00"}]}, "lines"),
    ({"lines": [{"sku": "A", "quantity": 1, "unit_price": "1.001"}]}, "lines.0.unit_price"),
    ({"occurred_at": "2026-01-01T10:00:00"}, "occurred_at"),
    ({"currency": "EURO"}, "currency"),
    ({"receipt_id": "has space"}, "receipt_id"),
    ({"customer": {"id": 1, "email": "a@example.com"}}, "customer"),
    ({"customer": {"email": "not-an-email"}}, "email"),
    ({"redeem_points": -5}, "redeem_points"),
    ({"redeem_points": 10}, "redeem_points"),
    ({"coupon": "X"}, "coupon"),
    ({"total": "9999999999999.99"}, "total"),
    ({"total": "12.30\n"}, "total"),
    ({"lines": [{"sku": "A", "quantity": 100000, "unit_price": "9999999.99"}]},
     "lines.0.quantity"),
    ({"occurred_at": "9999-12-31T23:59:59-12:00"}, "occurred_at"),
    ({"occurred_at": "0001-01-01T00:00:00+14:00"}, "occurred_at"),
    ({"occurred_at": "2099-01-01T00:00:00+00:00"}, "occurred_at"),
])
def test_bad_purchases_are_422_and_write_nothing(till, change, field):
    r = till.buy(None, **change, expect=422)
    assert field in r.get_json()["errors"], r.get_json()
    assert db.session.scalar(select(func.count()).select_from(Purchase)) == 0
    assert db.session.scalar(select(func.count()).select_from(PurchaseLine)) == 0


def test_on_postgresql_a_sale_is_a_few_round_trips(app, till, factory, tmp_path):
    """Count the client's waits on the server (libpq's protocol trace: a message sent,
    then one received) for one sale and one with redemption, once psycopg has prepared
    the statements: statements whose results are not read go in pipelines."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("round trips are PostgreSQL's; SQLite runs in the process")
    import psycopg

    trace = (tmp_path / "libpq.trace").open("w")

    def traced(dbapi_connection, _record):
        dbapi_connection.pgconn.trace(trace.fileno())
        dbapi_connection.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)

    def trips() -> int:
        trace.flush()
        sides = [line[0] for line in (tmp_path / "libpq.trace").read_text().splitlines()
                 if line[:1] in ("F", "B")]
        return sum(1 for pair in pairwise(sides) if pair == ("F", "B"))

    c = factory.customer()
    till.buy({"id": c.id}, "500.00")
    with app.app_context():
        engine = db.engine
    engine.dispose()  # new connections, traced
    event.listen(engine, "connect", traced)
    try:
        for n in range(12):  # psycopg prepares a statement on its fifth use
            till.buy({"id": c.id}, "10.00", **({"redeem_points": 10} if n % 2 else {}))
        before = trips()
        till.buy({"id": c.id}, "10.00")
        sale = trips() - before
        till.buy({"id": c.id}, "10.00", redeem_points=10)
        redeeming = trips() - sale - before
    finally:
        event.remove(engine, "connect", traced)
        engine.dispose()
        trace.close()
    print(f"\nround trips: a sale {sale}, with redemption {redeeming}")
    # The pool's ping, BEGIN, the key-changes counter (crm/keys.py: a revoked key stops at
    # once on every worker), [the lock against a racing return, the claim (which says
    # whether returns of the receipt are held)], then [the lines, the account (and its
    # lots when redeeming)], then [the stores of the member's recent sales (store
    # hopping) and everything the sale writes (new rows take their lot's and entry's ids
    # in SQL)], COMMIT.
    assert (sale, redeeming) == (7, 7)


def test_a_purchase_post_is_a_few_queries(app, till, factory):
    """The till's hot path: count every SQL statement of one purchase with redemption."""
    c = factory.customer()
    till.buy({"id": c.id}, "100.00")
    statements = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        till.buy({"id": c.id}, "40.00", redeem_points=50)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    queries = [s for s in statements if not s.startswith(("BEGIN", "COMMIT", "ROLLBACK"))]
    print(f"\nqueries for one purchase with redemption: {len(queries)}")
    # The claim (which also says whether returns are held), the lines, the account and
    # its lots, the stores of the member's recent sales (store hopping), the redemption's
    # entry and draw, the earned lot and its entry, the lot drawn from, the account, the
    # sale's figures. PostgreSQL adds the advisory lock against a return racing the sale,
    # and the key-changes counter read with the key cache (a revoked key stops at once),
    # which on SQLite is read on a connection of its own, outside the sale's transaction.
    assert len(queries) <= (14 if db.engine.dialect.name == "postgresql" else 12), \
        "\n".join(queries)
