"""The outbox and its sender against the fake Twilio server: every message sent exactly
once, whatever Twilio does, and nothing without consent or in quiet hours."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select, update

from campaigns import sender
from campaigns.models import Message
from crm.db import db
from crm.models import ConsentEvent
from tests.campaigns.conftest import drain, flask_process, message, queue


def test_queued_messages_are_sent_once_with_a_callback_url(twilio, member):
    people = [member() for _ in range(5)]
    ids = [queue(p, f"Hello {p.id}") for p in people]
    report = drain()
    assert report["submitted"] == 5
    assert sorted(twilio.bodies()) == sorted(f"Hello {p.id}" for p in people)
    for message_id, person in zip(ids, people, strict=True):
        row = message(message_id)
        [sent] = twilio.sent_to(person.phone)
        assert (row.status, row.provider_sid, row.attempts) == ("submitted", sent["sid"], 1)
        assert sent["status_callback"] == \
            f"https://crm.example.com/webhooks/twilio/status?message_id={message_id}"
        assert sent["from"] == "+15005550006"
    assert drain() == {"skipped": 0, "deferred": 0}  # nothing left, nothing sent again
    assert len(twilio.messages) == 5


def test_without_twilio_settings_messages_stay_queued(app, member):
    message_id = queue(member())
    assert sender.send_outbox() == {"not_configured": 1}
    assert message(message_id).status == "queued"


def test_no_consent_at_send_time_means_no_message(twilio, member, client, factory):
    keeps, withdraws = member(), member()
    never = member(consent=False)
    ids = [queue(p) for p in (keeps, withdraws, never)]
    headers = factory.headers("admin")
    r = client.put(f"/api/v1/customers/{withdraws.id}/consent", headers=headers,
                   json={"sms": False, "source": "test"})
    assert r.status_code == 200, r.get_json()
    drain()
    assert [message(i).status for i in ids] == ["submitted", "skipped", "skipped"]
    assert message(ids[1]).error_code == "no_consent"
    assert [m["to"] for m in twilio.messages] == [keeps.phone]


def _quiet_now(zone: str) -> dict[str, str]:
    """A quiet window around the current local time of ``zone`` (ends in 2 hours)."""
    local = datetime.now(ZoneInfo(zone))
    start, end = local - timedelta(hours=1), local + timedelta(hours=2)
    return {"start": start.strftime("%H:%M"), "end": end.strftime("%H:%M")}


def test_quiet_hours_hold_back_all_but_transactional(twilio, member, client, factory):
    store = factory.store("NYC", timezone="America/New_York", currency="USD")
    r = client.patch("/api/v1/stores/NYC", headers=factory.headers("admin"),
                     json={"quiet_hours": _quiet_now("America/New_York")})
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["quiet_hours"] == _quiet_now("America/New_York")
    person = member()
    campaign = queue(person, "Sale!", "campaign", store_id=store.id)
    receipt = queue(person, "Your receipt", "transactional", store_id=store.id)
    other_store = queue(person, "Elsewhere", "campaign")  # no store: QUIET_HOURS is off
    report = drain()
    assert report["deferred"] == 1
    held = message(campaign)
    assert held.status == "queued" and held.attempts == 0
    ends = datetime.now(ZoneInfo("America/New_York")) + timedelta(hours=2)
    assert held.next_attempt_at.astimezone(ZoneInfo("America/New_York")).strftime("%H:%M") \
        == ends.strftime("%H:%M")
    assert message(receipt).status == message(other_store).status == "submitted"
    assert sorted(twilio.bodies()) == ["Elsewhere", "Your receipt"]


def test_quiet_hours_must_be_times(client, factory):
    factory.store("LYS")
    headers = factory.headers("admin")
    for bad in ({"start": "25:00", "end": "08:00"}, {"start": "9pm", "end": "08:00"},
                {"start": "21:00"}):
        r = client.patch("/api/v1/stores/LYS", headers=headers, json={"quiet_hours": bad})
        assert r.status_code == 422, bad
    r = client.patch("/api/v1/stores/LYS", headers=headers, json={"currency": "USD"})
    assert r.status_code == 409


def test_twilio_down_for_a_while_then_up_sends_each_message_once(twilio, member):
    people = [member() for _ in range(6)]
    ids = [queue(p, f"Offer for {p.id}") for p in people]
    twilio.trouble.down = True
    for _ in range(3):
        drain()
    assert twilio.messages == []
    assert {message(i).status for i in ids} <= {"in_doubt", "queued"}
    twilio.trouble.down = False
    drain(rounds=3)
    assert sorted(twilio.bodies()) == sorted(f"Offer for {p.id}" for p in people)
    assert {message(i).status for i in ids} == {"submitted"}


def test_rate_limited_sends_are_retried_later(twilio, member, app):
    ids = [queue(member()) for _ in range(3)]
    twilio.trouble.errors, twilio.trouble.error_status = 2, 429
    app.config.update(SMS_SEND_CONCURRENCY=1, SMS_RETRY_SECONDS=60.0)
    try:
        report = drain()
    finally:
        app.config.update(SMS_SEND_CONCURRENCY=8, SMS_RETRY_SECONDS=0.0)
    assert report["queued"] == 2 and report["submitted"] == 1
    retried = [message(i) for i in ids if message(i).status == "queued"]
    later = datetime.now(UTC) + timedelta(seconds=50)
    assert all(m.attempts == 1 and m.error_code == "20500" and m.next_attempt_at > later
               for m in retried)
    drain()
    assert len(twilio.messages) == 1  # not due yet
    db.session.execute(update(Message).where(Message.status == "queued")
                       .values(next_attempt_at=datetime.now(UTC)))  # an hour passes
    db.session.commit()
    drain()
    assert {message(i).status for i in ids} == {"submitted"}
    assert len(twilio.messages) == 3


def test_permanent_failures_are_not_retried_and_opt_outs_withdraw_consent(twilio, member):
    bad, gone = member(), member()
    twilio.invalid.add(bad.phone)
    twilio.opted_out.add(gone.phone)
    ids = [queue(bad), queue(gone)]
    drain(rounds=2)
    assert twilio.requests == 2
    assert [(message(i).status, message(i).error_code) for i in ids] == \
        [("failed", "21211"), ("failed", "21610")]
    assert db.session.get(type(gone), gone.id, populate_existing=True).consent_sms is False
    sources = db.session.scalars(select(ConsentEvent.source).where(
        ConsentEvent.customer_id == gone.id).order_by(ConsentEvent.id)).all()
    assert sources[-1] == "twilio:21610"


def test_a_timeout_after_twilio_stored_the_message_is_not_sent_again(twilio, member, app):
    app.config["SMS_TIMEOUT_SECONDS"] = 0.5
    person = member()
    message_id = queue(person, "Only once")
    twilio.trouble.hang_after, twilio.trouble.hang_seconds = 1, 1.5
    report = drain()
    assert report["in_doubt"] == 1
    assert message(message_id).status == "in_doubt"
    drain()  # asks Twilio, finds it
    row = message(message_id)
    [sent] = twilio.sent_to(person.phone)
    assert (row.status, row.provider_sid) == ("submitted", sent["sid"])


def test_a_timeout_before_twilio_stored_the_message_sends_it_later(twilio, member, app):
    app.config["SMS_TIMEOUT_SECONDS"] = 0.5
    person = member()
    message_id = queue(person, "Eventually")
    twilio.trouble.hang_before, twilio.trouble.hang_seconds = 1, 1.5
    drain()
    assert message(message_id).status == "in_doubt"
    drain(rounds=2)
    assert len(twilio.sent_to(person.phone)) == 1
    assert message(message_id).status == "submitted"
    assert message(message_id).attempts == 2


def test_same_text_twice_to_one_number_is_two_messages(twilio, member, app):
    """The doubt check matches a Twilio message to one row only."""
    app.config["SMS_TIMEOUT_SECONDS"] = 0.5
    person = member()
    first = queue(person, "Your code is ready")
    drain()
    second = queue(person, "Your code is ready")
    twilio.trouble.hang_before, twilio.trouble.hang_seconds = 1, 1.5
    drain(rounds=3)
    assert len(twilio.sent_to(person.phone)) == 2
    assert message(first).provider_sid != message(second).provider_sid


def test_a_sender_killed_mid_batch_loses_and_doubles_nothing(twilio, member, app,
                                                             database_url):
    people = [member() for _ in range(3)]
    ids = [queue(p, f"Batch {p.id}") for p in people]
    twilio.trouble.hang_after, twilio.trouble.hang_seconds = 1, 30.0
    worker = flask_process(
        database_url, "messages", "send",
        TWILIO_ACCOUNT_SID=app.config["TWILIO_ACCOUNT_SID"],
        TWILIO_AUTH_TOKEN=app.config["TWILIO_AUTH_TOKEN"], TWILIO_FROM="+15005550006",
        TWILIO_API_BASE_URL=app.config["TWILIO_API_BASE_URL"],
        SMS_SEND_CONCURRENCY="1", SMS_TIMEOUT_SECONDS="60")
    try:
        deadline = time.monotonic() + 30
        while not twilio.messages and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(twilio.messages) == 1  # Twilio has it; the sender has not recorded it
    finally:
        worker.kill()
        worker.wait()
    assert [message(i).status for i in ids] == ["sending"] * 3
    drain()
    assert [message(i).status for i in ids] == ["sending"] * 3  # the claim may be alive
    app.config["SMS_CLAIM_TIMEOUT_SECONDS"], saved = 1.0, app.config["SMS_CLAIM_TIMEOUT_SECONDS"]
    time.sleep(1.0)  # the claim is older than the timeout: its sender died
    try:
        drain(rounds=2)
    finally:
        app.config["SMS_CLAIM_TIMEOUT_SECONDS"] = saved
    assert sorted(twilio.bodies()) == sorted(f"Batch {p.id}" for p in people)
    rows = [message(i) for i in ids]
    assert {r.status for r in rows} == {"submitted"}
    assert {r.provider_sid for r in rows} == {m["sid"] for m in twilio.messages}


def test_the_outbox_lists_messages_with_filters(twilio, member, client, factory):
    a, b = member(), member()
    queue(a, "one"), queue(a, "two"), queue(b, "three", "transactional")
    drain()
    headers = factory.headers("marketing")
    r = client.get(f"/api/v1/messages?customer_id={a.id}", headers=headers)
    assert r.status_code == 200
    assert [m["body"] for m in r.get_json()["items"]] == ["two", "one"]
    r = client.get("/api/v1/messages?purpose=transactional&status=submitted", headers=headers)
    [only] = r.get_json()["items"]
    assert (only["to"], only["status"]) == (b.phone, "submitted")
    assert only["provider_sid"].startswith("SM")
    assert client.get("/api/v1/messages?status=lost", headers=headers).status_code == 422
    assert client.get("/api/v1/messages", headers=factory.headers("pos")).status_code == 403


def test_sending_is_claimed_by_one_sender_only(twilio, member):
    ids = [queue(member()) for _ in range(4)]
    db.session.rollback()
    now = datetime.now(UTC)
    first_token, first = sender.claim(now, 3)
    second_token, second = sender.claim(now, 3)
    db.session.commit()
    assert len(first) == 3 and len(second) == 1
    assert {r.id for r in first} | {r.id for r in second} == set(ids)
    assert db.session.scalar(select(Message.claim).where(Message.id == second[0].id)) \
        == second_token != first_token


def test_a_claim_never_takes_a_message_without_consent_or_in_quiet_hours(twilio, member,
                                                                        factory):
    """Consent and quiet hours are checked by the claim itself, not only before a run."""
    quiet = factory.store("QT1", timezone="Asia/Tokyo",
                          quiet_hours=_quiet_now("Asia/Tokyo"))
    person, withdrawn = member(), member()
    in_quiet = queue(person, "Sale!", store_id=quiet.id)
    urgent = queue(person, "Receipt", "transactional", store_id=quiet.id)
    late = queue(withdrawn)
    db.session.rollback()
    withdrawn = db.session.get(type(withdrawn), withdrawn.id)
    withdrawn.consent_sms = False
    db.session.commit()
    _, claimed = sender.claim(datetime.now(UTC), 10)
    db.session.commit()
    assert [row.id for row in claimed] == [urgent]
    assert message(in_quiet).status == message(late).status == "queued"


def test_a_doubt_is_settled_against_the_claim_time_not_the_batch_end(twilio, member, app):
    """However long the batch took after Twilio stored the message, the lookup covers it."""
    app.config["SMS_TIMEOUT_SECONDS"] = 0.5
    person = member()
    message_id = queue(person, "Once only")
    twilio.trouble.hang_after, twilio.trouble.hang_seconds = 1, 1.5
    drain()
    row = message(message_id)
    [sent] = twilio.sent_to(person.phone)
    assert row.status == "in_doubt" and row.claimed_at <= sent["date_created"]
    # as if the batch had gone on for five more minutes after Twilio stored it
    sent["date_created"] -= timedelta(minutes=5)
    db.session.execute(update(Message).where(Message.id == message_id).values(
        claimed_at=row.claimed_at - timedelta(minutes=5)))
    db.session.commit()
    drain()
    assert message(message_id).status == "submitted"
    assert len(twilio.sent_to(person.phone)) == 1


def test_refused_credentials_stop_sending_and_fail_nothing(twilio, member, app):
    ids = [queue(member()) for _ in range(3)]
    app.config["TWILIO_AUTH_TOKEN"] = "rotated"
    app.config["SMS_RETRY_SECONDS"] = 60.0
    try:
        report = drain()
    finally:
        app.config.update(TWILIO_AUTH_TOKEN=twilio.auth_token, SMS_RETRY_SECONDS=0.0)
    assert report.get("failed", 0) == 0 and report["queued"] >= 1
    rows = [message(i) for i in ids]
    assert {(r.status, r.attempts) for r in rows} == {("queued", 0)}
    db.session.execute(update(Message).values(next_attempt_at=datetime.now(UTC)))
    db.session.commit()
    drain()
    assert {message(i).status for i in ids} == {"submitted"}
    assert len(twilio.messages) == 3


def test_a_campaigns_own_quiet_hours_hold_at_send_time(twilio, member):
    person = member()
    window = _quiet_now("Europe/Paris")
    db.session.rollback()
    late = Message(customer_id=person.id, to_number=person.phone, body="Sale!",
                   purpose="campaign", quiet_start=window["start"], quiet_end=window["end"],
                   quiet_zone="Europe/Paris")
    db.session.add(late)
    db.session.commit()
    drain()
    row = message(late.id)
    assert (row.status, row.attempts) == ("queued", 0)
    assert row.next_attempt_at.astimezone(ZoneInfo("Europe/Paris")).strftime("%H:%M") == \
        window["end"]
    assert twilio.messages == []
