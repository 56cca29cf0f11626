"""The console through Flask's test client: users and their command, sign-in and its
limits, sessions, CSRF, roles, who-did-what, and the dashboard's figures."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from console import users
from console.models import User
from console.views import dashboard_figures
from crm.db import db, utcnow
from crm.models import AuditLog, ConsentEvent
from loyalty import coupons, points, settings
from loyalty.models import Account, Coupon, Purchase
from tests.console.conftest import fresh

PASSWORD = "a long enough password"


def _user(role: str = "admin", email: str | None = None) -> User:
    fresh()
    user = users.create_user(email or f"{role}@example.com", role, PASSWORD)
    db.session.commit()
    return user


def _token(client, path: str = "/console/login") -> str:
    html = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)


def _sign_in(client, email: str, password: str = PASSWORD, **query):
    token = _token(client)
    return client.post("/console/login", query_string=query,
                       data={"email": email, "password": password, "csrf_token": token})


@pytest.fixture
def config(app):
    saved = dict(app.config)
    yield app.config
    app.config.clear()
    app.config.update(saved)


def test_users_command_create_list_disable_reset(runner, factory):
    out = runner.invoke(args=["users", "create", "--email", "Ann@Example.com",
                              "--role", "marketer"])
    assert out.exit_code == 0, out.output
    password = re.search(r"password: (\S+)", out.output).group(1)
    assert users.authenticate("ann@example.com", password) is not None
    out = runner.invoke(args=["users", "create", "--email", "bo@example.com", "--role",
                              "viewer", "--password-stdin"], input="from stdin, long\n")
    assert "password:" not in out.output
    assert users.authenticate("bo@example.com", "from stdin, long") is not None
    listed = runner.invoke(args=["users", "list"]).output
    assert "ann@example.com\tmarketer\tactive" in listed
    assert "bo@example.com\tviewer\tactive" in listed
    assert runner.invoke(args=["users", "disable", "ann@example.com"]).exit_code == 0
    fresh()
    assert users.authenticate("ann@example.com", password) is None
    out = runner.invoke(args=["users", "reset-password", "bo@example.com"])
    new = re.search(r"password: (\S+)", out.output).group(1)
    fresh()
    assert users.authenticate("bo@example.com", new) is not None
    assert users.authenticate("bo@example.com", "from stdin, long") is None
    bad = runner.invoke(args=["users", "create", "--email", "x@example.com", "--role",
                              "admin", "--password-stdin"], input="short\n")
    assert bad.exit_code != 0 and "too short" in bad.output


def test_sign_in_sets_a_strict_session_cookie_and_records_the_time(client, factory):
    user = _user()
    answer = _sign_in(client, "ADMIN@example.com")
    assert answer.status_code == 302 and answer.headers["Location"] == "/console/"
    cookie = answer.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Expires=" in cookie  # the idle timeout: CONSOLE_IDLE_MINUTES
    fresh()
    assert db.session.get(User, user.id).last_sign_in_at is not None
    page = client.get("/console/")
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in page.headers["Content-Security-Policy"]


def test_unknown_email_and_wrong_password_get_the_same_answer(client, factory):
    _user()
    unknown = _sign_in(client, "nobody@example.com")
    wrong = _sign_in(client, "admin@example.com", "not the password at all")
    assert unknown.status_code == wrong.status_code == 200
    message = "The email or password is not right."
    assert message in unknown.get_data(as_text=True)
    assert message in wrong.get_data(as_text=True)


def test_failed_sign_ins_are_limited_per_account_then_per_address(client, factory, config):
    config["CONSOLE_SIGNIN_LIMIT_ADDRESS"] = "12 per 15 minutes"
    _user()
    _user("viewer")
    for _ in range(5):
        assert _sign_in(client, "admin@example.com", "wrong wrong wrong").status_code == 200
    # The account is locked for a while, even with the right password...
    assert _sign_in(client, "admin@example.com").status_code == 429
    # ... and an unknown email is treated the same way.
    for _ in range(5):
        _sign_in(client, "ghost@example.com", "wrong wrong wrong")
    assert _sign_in(client, "ghost@example.com", "whatever").status_code == 429
    # Other accounts still sign in; successes are not counted.
    assert _sign_in(client, "viewer@example.com").status_code == 302
    for n in range(2):
        _sign_in(client, f"other{n}@example.com", "wrong wrong wrong")
    assert _sign_in(client, "viewer@example.com").status_code == 429


def test_next_only_leads_inside_the_console(client, factory):
    _user()
    answer = _sign_in(client, "admin@example.com", next="//evil.example.com/")
    assert answer.headers["Location"] == "/console/"
    client.post("/console/logout", data={"csrf_token": _token(client, "/console/")})
    answer = _sign_in(client, "admin@example.com", next="/console/setup")
    assert answer.headers["Location"] == "/console/setup"


def test_signed_out_pages_lead_to_sign_in_and_root_to_the_console(client, factory):
    assert client.get("/").headers["Location"] == "/console/"
    assert client.get("/console/customers").headers["Location"].startswith(
        "/console/login?next=/console/customers")
    htmx = client.get("/console/customers", headers={"HX-Request": "true"})
    assert htmx.status_code == 401 and htmx.headers["HX-Redirect"] == "/console/login"


def test_a_disabled_user_is_signed_out_at_the_next_page(client, factory):
    user = _user()
    _sign_in(client, "admin@example.com")
    users.set_active(db.session.get(User, user.id), False)
    db.session.commit()
    assert client.get("/console/").status_code == 302


def test_csrf_on_forms_and_htmx_requests(client, factory):
    customer = factory.customer(phone="+12125550100")
    _user("marketer")
    _sign_in(client, "marketer@example.com")
    refused = client.post(f"/console/customers/{customer.id}/consent", data={"sms": "on"})
    assert refused.status_code == 400
    token = _token(client, "/console/")
    done = client.post(f"/console/customers/{customer.id}/consent", data={"sms": "on"},
                       headers={"X-CSRFToken": token, "HX-Request": "true"})
    assert done.status_code == 302
    fresh()
    event = db.session.scalar(select(ConsentEvent).where(
        ConsentEvent.customer_id == customer.id, ConsentEvent.channel == "sms")
        .order_by(ConsentEvent.id.desc()))
    assert event.granted and event.source.startswith("user:")


def test_roles_viewer_marketer_admin(client, factory):
    customer = factory.customer(phone="+12125550101")
    for role in ("viewer", "marketer", "admin"):
        _user(role)
    expected = {"viewer": (403, 403, 403), "marketer": (302, 403, 403),
                "admin": (302, 302, 302)}
    for role, (consent, adjust, program) in expected.items():
        c = client.application.test_client()
        _sign_in(c, f"{role}@example.com")
        token = _token(c, "/console/")
        got = (c.post(f"/console/customers/{customer.id}/consent",
                      data={"csrf_token": token, "email": "on"}).status_code,
               c.post(f"/console/customers/{customer.id}/adjustments",
                      data={"csrf_token": token, "points": "10", "reason": "r"}).status_code,
               c.post("/console/setup/program",
                      data={"csrf_token": token, "currency": "USD", "points_per_unit": "1",
                            "point_value": "0.01", "rounding": "floor", "pending_days": "0",
                            "expiry_days": "365", "tier_grace_days": "30"}).status_code)
        assert got == (consent, adjust, program), role


def test_console_changes_are_recorded_with_the_user(client, factory):
    customer = factory.customer(phone="+12125550102")
    user = _user()
    _sign_in(client, "admin@example.com")
    token = _token(client, "/console/")
    client.post(f"/console/customers/{customer.id}/adjustments",
                data={"csrf_token": token, "points": "40", "reason": "welcome"})
    export = client.get(f"/console/customers/{customer.id}/export")
    assert export.status_code == 200 and export.mimetype == "application/json"
    fresh()
    actor = f"user:{user.id}:admin@example.com"
    audit = db.session.scalars(select(AuditLog).where(
        AuditLog.object_type == "customer", AuditLog.object_id == str(customer.id))
        .order_by(AuditLog.id)).all()
    assert [(a.action, a.actor) for a in audit] == [("adjust_points", actor), ("export", actor)]
    rows = db.session.scalars(points.ledger_rows(customer.id)).all()
    assert [(r.kind, r.points, r.actor) for r in rows] == [("adjust", 40, actor)]


def test_an_invalid_adjustment_shows_the_error_and_changes_nothing(client, factory):
    customer = factory.customer(phone="+12125550103")
    _user()
    _sign_in(client, "admin@example.com")
    token = _token(client, "/console/")
    answer = client.post(f"/console/customers/{customer.id}/adjustments",
                         data={"csrf_token": token, "points": "0", "reason": "nothing"})
    assert answer.status_code == 422
    assert 'id="adjust-points-error"' in answer.get_data(as_text=True)
    fresh()
    assert db.session.scalars(points.ledger_rows(customer.id)).all() == []


def test_dashboard_figures_add_up(client, factory):
    settings.update_program({"currency": "USD"})
    db.session.commit()
    store = factory.store("NYC01", currency="USD", timezone="America/New_York")
    pos = factory.headers("pos", store=store.code)
    a = factory.customer(phone="+12125550110")
    b = factory.customer(phone="+12125550111")
    now = utcnow()
    for n, (who, days, total) in enumerate([(a, 1, "10.00"), (a, 40, "20.00"),
                                            (b, 2, "5.50"), (b, 120, "99.00")]):
        answer = client.post("/api/v1/purchases", headers=pos, json={
            "receipt_id": f"R{n}", "occurred_at": (now - timedelta(days=days)).isoformat(),
            "currency": "USD", "total": total, "customer": {"id": who.id},
            "lines": [{"sku": "X", "quantity": 1, "unit_price": total}]})
        assert answer.status_code == 201, answer.get_json()
    fresh()
    f = dashboard_figures()
    assert (f["members"], f["new_members"], f["active_members"]) == (2, 2, 2)
    assert len(f["sales"]) == 90 and sum(d["purchases"] for d in f["sales"]) == 3
    assert sum(d["paid"] for d in f["sales"]) == 1000 + 2000 + 550
    assert sum(d["issued"] for d in f["points"]) == 10 + 20 + 5
    balances = db.session.scalar(select(func.sum(Account.balance)))
    assert f["liability"]["points"] == balances == 10 + 20 + 5 + 99
    assert f["liability"]["value"] == balances  # a point is worth 0.01 USD: 1 cent each
    assert db.session.scalar(select(func.count()).select_from(Purchase)) == 4
    _user("viewer")
    _sign_in(client, "viewer@example.com")
    page = client.get("/console/").get_data(as_text=True)
    assert 'id="fig-members">2<' in page and "$1.34" in page


def test_demo_prints_console_users_and_adds_a_year_once(runner, client, factory):
    first = runner.invoke(args=["demo", "--customers", "260"])
    assert first.exit_code == 0, first.output
    added = re.search(r"A year of history added: ([\d,]+) purchases", first.output)
    assert added and int(added.group(1).replace(",", "")) > 500
    passwords = dict(re.findall(r"^\s+(\S+@demo\.example\.com)\s+(\S+)$", first.output, re.M))
    assert set(passwords) == {"viewer@demo.example.com", "marketer@demo.example.com",
                              "admin@demo.example.com"}
    fresh()
    count = db.session.scalar(select(func.count()).select_from(Purchase))
    second = runner.invoke(args=["demo", "--customers", "260"])
    assert "A year of history" not in second.output
    fresh()
    assert db.session.scalar(select(func.count()).select_from(Purchase)) == count
    assert runner.invoke(args=["loyalty", "verify"]).exit_code == 0
    again = dict(re.findall(r"^\s+(\S+@demo\.example\.com)\s+(\S+)$", second.output, re.M))
    assert _sign_in(client, "admin@demo.example.com", again["admin@demo.example.com"]
                    ).status_code == 302
    f = dashboard_figures()
    assert sum(d["returned"] for d in f["sales"]) > 0 and f["coupons_redeemed"] > 0
    assert sum(d["redeemed"] for d in f["points"]) > 0 and f["nps"][0]["responses"] > 0


def test_a_large_coupon_batch_grows_a_part_at_a_time_without_script_too(client, factory):
    offer = coupons.create_offer({"name": "Big", "kind": "percent", "value": Decimal(10)})
    db.session.commit()
    _user("marketer")
    _sign_in(client, "marketer@example.com")
    token = _token(client, "/console/")
    first = client.post(f"/console/setup/offers/{offer.id}/coupons",
                        data={"csrf_token": token, "count": "7000", "prefix": "", "length": "8"})
    assert first.status_code == 302 and "made=5000" in first.location
    page = client.get(first.location).get_data(as_text=True)
    assert 'role="status"' in page and "5,000 of 7,000" in page
    growing = dict(item.split("=") for item in first.location.split("?")[1].split("&"))
    more = client.post(f"/console/setup/offers/{offer.id}/coupons/more",
                       data={"csrf_token": token, **growing})
    assert more.status_code == 302 and "batch=" not in more.location
    fresh()
    assert db.session.scalar(select(func.count()).select_from(Coupon)
                             .where(Coupon.batch == growing["batch"])) == 7000
    again = client.post(f"/console/setup/offers/{offer.id}/coupons/more",  # a made-up batch
                        data={"csrf_token": token, **growing, "batch": "0" * 16})
    assert again.status_code == 400
    fresh()
    assert db.session.scalar(select(func.count()).select_from(Coupon)) == 7000
