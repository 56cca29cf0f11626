"""Issue 16 point 2: nothing personal in log lines, metrics or the errors clients see.
A scenario through the API carries marker values (email, phone, names, card, birthday,
an SMS body sent through the fake Twilio, an inbound reply), including forced errors (a
409 on a taken email, a database error whose statement carries a marker, an unexpected
exception quoting one); every log record of the run, formatted as production writes it,
and /metrics are searched for the markers."""

from __future__ import annotations

import io
import logging

from sqlalchemy import text

from crm import create_app
from crm.db import db
from crm.observability import JsonFormatter
from tests.campaigns.conftest import PUBLIC, drain, queue

EMAIL = "zq.marker.mail@example.org"
PHONE = "+12125550987"
PHONE_DIGITS = "2125550987"
FIRST, LAST = "Quixmarkerfirst", "Vexmarkerlast"
CARD = "CARDMARK77123"
BODY = "Markerbody offer just for you"
REPLY = "markerreply thanks"
MARKERS = [EMAIL, PHONE_DIGITS, FIRST, LAST, CARD, "Markerbody", "markerreply",
           "1977-03-14"]


def test_no_marker_in_logs_metrics_or_error_answers(app, client, factory, till, twilio,
                                                    database_url, tmp_path):
    sink = io.StringIO()
    handler = logging.StreamHandler(sink)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    answers: list[str] = []
    try:
        shop, admin = factory.headers("shop"), factory.headers("admin")
        created = client.post("/api/v1/customers", headers=shop, json={
            "email": EMAIL, "phone": PHONE, "first_name": FIRST, "last_name": LAST,
            "card_number": CARD, "birthday": "1977-03-14", "consent": {"sms": True}})
        assert created.status_code == 201, created.get_json()
        customer_id = created.get_json()["id"]
        taken = client.post("/api/v1/customers", headers=shop, json={"email": EMAIL})
        assert taken.status_code == 409
        answers.append(taken.get_data(as_text=True))
        bad = client.post("/api/v1/customers", headers=shop,
                          json={"email": EMAIL + "@@", "phone": PHONE + "x"})
        assert bad.status_code == 422
        answers.append(bad.get_data(as_text=True))
        for lookup in ({"phone": PHONE}, {"card_number": CARD}, {"email": EMAIL}):
            till.buy(lookup, "10.00")
        for query in (f"phone={PHONE}", f"email={EMAIL}", f"q={LAST}", f"card={CARD}"):
            assert client.get(f"/api/v1/customers?{query}", headers=shop).status_code == 200
        assert client.get(f"/api/v1/customers/{customer_id}/export",
                          headers=admin).status_code == 200
        sync = client.post("/api/v1/customers/sync", headers=shop, json={"customers": [
            {"external_id": "m-1", "email": EMAIL, "first_name": FIRST,
             "updated_at": "2026-12-01T10:00:00+00:00"}]})
        assert sync.status_code == 200
        from crm.models import Customer

        db.session.rollback()
        queue(db.session.get(Customer, customer_id), BODY)
        drain()
        form, signature = twilio.signed_inbound(PUBLIC + "/webhooks/twilio/inbound", PHONE,
                                                REPLY)
        client.post("/webhooks/twilio/inbound", data=form,
                    headers={"X-Twilio-Signature": signature})
        answers += _forced_errors(database_url, tmp_path)
        metrics = client.get("/metrics").get_data(as_text=True)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    log = sink.getvalue()
    assert '"logger": "crm.request"' in log  # the run was logged
    # the forced errors were logged too (SQLite: database error; PostgreSQL: data error)
    assert "unhandled error" in log
    assert "database error" in log or "data error answered 422" in log
    for marker in MARKERS:
        assert marker.lower() not in log.lower(), (marker, [
            line for line in log.splitlines() if marker.lower() in line.lower()][:3])
        assert marker.lower() not in metrics.lower(), marker
        for answer in answers:
            assert marker.lower() not in answer.lower(), (marker, answer)


def _forced_errors(database_url: str, tmp_path) -> list[str]:
    """A database error on a statement carrying a marker (PostgreSQL refuses the cast,
    SQLite answers it), and an exception quoting one,
    under requests of an app of their own (routes added for the test)."""
    other = create_app({"DATABASE_URL": database_url, "INSTANCE_PATH": str(tmp_path),
                        "LOG_LEVEL": "DEBUG"})

    @other.post("/test/database-error")
    def database_error():
        db.session.execute(text("SELECT * FROM no_such_table WHERE email = :email"),
                           {"email": EMAIL})
        return {}

    @other.post("/test/cast-error")
    def cast_error():
        db.session.execute(text("SELECT CAST(:phone AS INTEGER) + CAST(:email AS DATE)"),
                           {"phone": PHONE, "email": EMAIL})
        return {}

    @other.post("/test/exception")
    def exception():
        raise ValueError(f"customer {FIRST} {LAST} {EMAIL} not handled")

    client = other.test_client()
    answers = []
    # A missing table is OperationalError on SQLite (503) and ProgrammingError on
    # PostgreSQL (500): either way a problem document without the statement.
    for path, statuses in (("/test/database-error", {500, 503}),
                           ("/test/cast-error", {200, 422, 503}),
                           ("/test/exception", {500})):
        r = client.post(path)
        assert r.status_code in statuses, (path, r.status_code)
        assert r.status_code == 200 or r.mimetype == "application/problem+json"
        answers.append(r.get_data(as_text=True))
    return answers
