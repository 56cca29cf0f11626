from datetime import timedelta

from sqlalchemy import update

from crm.db import db, utcnow
from loyalty import jobs, settings
from loyalty.models import Account
from tests.helpers import ago, verify_clean


def test_pending_points_are_released_by_the_job_once(till, factory, runner):
    settings.update_program({"pending_days": 14})
    db.session.commit()
    c = factory.customer()
    till.buy({"id": c.id}, "10.00", occurred_at=ago(days=20))  # window over: spendable
    till.buy({"id": c.id}, "30.00", occurred_at=ago(days=10))
    till.buy({"id": c.id}, "50.00", occurred_at=ago(days=2))
    shown = till.points(c.id)
    assert (shown["balance"], shown["pending"]) == (10, 80)
    assert runner.invoke(args=["loyalty", "release-pending"]).output.strip() == \
        "released 0 lot(s)"
    assert jobs.release_pending(utcnow() + timedelta(days=5)) == 1
    assert jobs.release_pending(utcnow() + timedelta(days=5)) == 0
    db.session.commit()
    shown = till.points(c.id)
    assert (shown["balance"], shown["pending"]) == (40, 50)
    verify_clean(runner)
    assert jobs.release_pending(utcnow() + timedelta(days=13)) == 1
    db.session.commit()
    assert till.points(c.id)["balance"] == 90
    verify_clean(runner)


def test_expiry_job_expires_what_is_left_of_each_lot(till, factory, runner):
    c = factory.customer()
    old = till.buy({"id": c.id}, "30.00", occurred_at=ago(days=360)).get_json()
    till.buy({"id": c.id}, "50.00", occurred_at=ago(days=100))
    till.buy({"id": c.id}, "20.00", redeem_points=10, lines=[
        {"sku": "X", "quantity": 1, "unit_price": "20.00", "earns": False}])
    shown = till.points(c.id)
    assert shown["balance"] == 70
    assert shown["expiring"][0]["points"] == 20  # what is left of the oldest lot
    assert jobs.expire_points(utcnow() + timedelta(days=10)) == 1
    assert jobs.expire_points(utcnow() + timedelta(days=10)) == 0
    db.session.commit()
    assert till.points(c.id)["balance"] == 50
    ledger = till.client.get(f"/api/v1/customers/{c.id}/points/ledger",
                             headers=till.headers).get_json()["items"]
    assert ledger[0]["kind"] == "expire" and ledger[0]["points"] == -20
    assert {e["kind"] for e in ledger} == {"earn", "redeem", "expire"}
    assert any(e["purchase_id"] == old["id"] for e in ledger)
    verify_clean(runner)


def test_expired_points_cannot_be_spent_before_the_job_runs(till, factory):
    settings.update_program({"expiry_days": 30})
    db.session.commit()
    c = factory.customer()
    till.buy({"id": c.id}, "30.00", occurred_at=ago(days=31))
    r = till.buy({"id": c.id}, "30.00", redeem_points=30, expect=409)
    assert r.get_json()["balance"] == 0


def test_verify_finds_a_balance_that_differs_from_the_ledger(till, factory, runner):
    c = factory.customer()
    till.buy({"id": c.id}, "30.00")
    verify_clean(runner)
    db.session.execute(update(Account).values(balance=Account.balance + 5))
    db.session.commit()
    result = runner.invoke(args=["loyalty", "verify"])
    assert result.exit_code == 1
    assert '"ledger_balance": 30' in result.output and "1 account(s)" in result.output


def test_adjustments_record_reason_and_who(till, factory, admin, runner):
    c = factory.customer()
    url = f"/api/v1/customers/{c.id}/points/adjustments"
    r = till.client.post(url, headers=admin, json={"points": 40, "reason": "goodwill"})
    assert r.status_code == 201 and r.get_json()["balance"] == 40
    r = till.client.post(url, headers=admin, json={"points": -50, "reason": "fix"})
    assert r.status_code == 409
    r = till.client.post(url, headers=admin, json={"points": -15, "reason": "fix"})
    assert r.get_json()["balance"] == 25
    rows = till.client.get(f"/api/v1/customers/{c.id}/points/ledger?page_size=1",
                           headers=admin)
    assert len(rows.get_json()["items"]) == 1 and "next_page" in rows.headers["X-Pagination"]
    row = rows.get_json()["items"][0]
    assert row["kind"] == "adjust" and row["reason"] == "fix"
    assert row["actor"].startswith("key:") and row["cause"] == "admin"
    for body in ({"points": 0, "reason": "x"}, {"points": 5}, {"points": "5", "reason": "x"},
                 {"points": 5, "reason": ""}):
        assert till.client.post(url, headers=admin, json=body).status_code == 422, body
    assert till.client.post(url, headers=till.headers,
                            json={"points": 5, "reason": "x"}).status_code == 403
    assert till.client.post("/api/v1/customers/999999/points/adjustments", headers=admin,
                            json={"points": 5, "reason": "x"}).status_code == 404
    verify_clean(runner)


def test_idempotency_key_replays_and_refuses_reuse(till, factory, admin):
    c = factory.customer()
    url = f"/api/v1/customers/{c.id}/points/adjustments"
    headers = {**admin, "Idempotency-Key": "adj-1"}
    first = till.client.post(url, headers=headers, json={"points": 10, "reason": "a"})
    again = till.client.post(url, headers=headers, json={"points": 10, "reason": "a"})
    assert first.status_code == again.status_code == 201
    assert again.get_json() == first.get_json()
    assert again.headers["Idempotent-Replayed"] == "true"
    other = till.client.post(url, headers=headers, json={"points": 99, "reason": "a"})
    assert other.status_code == 409
    assert till.points(c.id)["balance"] == 10
    bad = till.client.post(url, headers={**admin, "Idempotency-Key": "x" * 201},
                           json={"points": 1, "reason": "a"})
    assert bad.status_code == 422


def test_points_of_unknown_customer_is_404(till):
    assert till.client.get("/api/v1/customers/424242/points",
                           headers=till.headers).status_code == 404
    assert till.client.get("/api/v1/customers/424242/points/ledger",
                           headers=till.headers).status_code == 404
