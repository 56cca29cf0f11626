"""SMS sent per hour: past SMS_BURST_LIMIT an alert, at SMS_HARD_CAP the outbox holds."""

from sqlalchemy import select

from crm.db import db
from crm.models import SecurityAlert
from tests.campaigns.conftest import drain, message, queue


def _rules():
    db.session.rollback()
    return {a.rule: a for a in db.session.scalars(select(SecurityAlert))}


def test_a_burst_alerts_and_the_hard_cap_holds_the_outbox(twilio, member, app, monkeypatch):
    monkeypatch.setitem(app.config, "SMS_BURST_LIMIT", 2)
    monkeypatch.setitem(app.config, "SMS_HARD_CAP", 3)
    first = [queue(member(), f"Hello {n}") for n in range(2)]
    drain()
    assert all(message(m).status != "queued" for m in first)
    assert _rules() == {}  # exactly at the usual rate: quiet
    more = [queue(member(), f"Hello {n}") for n in range(3)]
    report = drain()
    statuses = [message(m).status for m in more]
    assert statuses.count("queued") == 2, statuses  # held: the cap allows 3 an hour
    assert report.get("held_by_cap") == 1
    rules = _rules()
    assert rules["sms_burst"].subject == "outbox"  # the third message is one past usual
    assert rules["sms_hard_cap"].subject == "outbox"
    assert len(twilio.bodies()) == 3
