"""Campaign tests in the outbox ("Send a test to me" in the console): sent at once to
the number given, with no customer, whatever the quiet hours; never counted in a
campaign's report or against anyone's frequency cap."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from campaigns import outbox, planner, reports
from campaigns.models import Message
from crm.db import db
from tests.campaigns.conftest import drain, message


def _quiet_all_day(app):
    now = datetime.now(UTC)
    start = (now - timedelta(hours=1)).strftime("%H:%M")
    end = (now + timedelta(hours=2)).strftime("%H:%M")
    app.config.update(QUIET_HOURS=f"{start}-{end}", DEFAULT_TIMEZONE="UTC")


def test_a_test_goes_out_in_quiet_hours_without_a_customer(app, twilio, member):
    saved = (app.config["QUIET_HOURS"], app.config["DEFAULT_TIMEZONE"])
    _quiet_all_day(app)
    try:
        person = member()
        db.session.rollback()
        test = outbox.queue_test("Hi Ada, a test", "+14155552671")
        held = outbox.queue(person, "A campaign message", "campaign")
        db.session.commit()
        test, held = test.id, held.id
        drain()
    finally:
        app.config.update(QUIET_HOURS=saved[0], DEFAULT_TIMEZONE=saved[1])
    assert message(test).status == "submitted" and message(test).purpose == "test"
    assert message(held).status == "queued"  # the quiet hours hold the real one
    assert [m["body"] for m in twilio.sent_to("+14155552671")] == ["Hi Ada, a test"]


def test_tests_are_not_in_the_report_nor_capped(client, factory, twilio, member, program):
    people = [member() for _ in range(3)]
    db.session.rollback()
    segment = client.post("/api/v1/segments", headers=factory.headers("marketing"), json={
        "name": "all", "rule": {"field": "consent_sms", "op": "eq", "value": True}}).get_json()
    created = client.post("/api/v1/campaigns", headers=factory.headers("marketing"), json={
        "name": "c", "segment_id": segment["id"], "template": "Hi {name}",
        "holdout_percent": 0, "frequency_cap": {"count": 1, "days": 7},
        "schedule": {"at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat()}}).get_json()
    db.session.rollback()
    for person in people:  # tests to the very numbers of the audience
        outbox.queue_test("Hi, a test", person.phone, created["id"])
    db.session.commit()
    drain()
    client.post(f"/api/v1/campaigns/{created['id']}/activate",
                headers=factory.headers("marketing"))
    db.session.rollback()
    counts = planner.run_due()
    db.session.commit()
    assert counts["queued"] == 3 and "capped" not in counts
    drain()
    report = reports.report(created["id"])
    assert (report["sent"], report["queued"], report["audience"]) == (3, 0, 3)
    assert len(db.session.scalars(select(Message).where(
        Message.campaign_id == created["id"])).all()) == 6
