"""Twilio's requests to us: signed delivery reports and inbound SMS."""

from __future__ import annotations

from sqlalchemy import select

from campaigns.models import InboundMessage
from crm.db import db
from crm.models import ConsentEvent, Customer
from tests.campaigns.conftest import PUBLIC, drain, message, queue

INBOUND = "/webhooks/twilio/inbound"


def _report(client, twilio, message_id, status, error_code=None, signature=None):
    [sent] = [m for m in twilio.messages
              if m["status_callback"].endswith(f"={message_id}")]
    url, form, good = twilio.signed_callback(sent, status, error_code)
    path = url.removeprefix(PUBLIC)
    return client.post(path, data=form,
                       headers={"X-Twilio-Signature": good if signature is None else signature})


def test_status_callbacks_move_a_message_forward_only(twilio, member, client):
    message_id = queue(member())
    drain()
    assert _report(client, twilio, message_id, "sent").status_code == 204
    assert message(message_id).status == "sent"
    assert _report(client, twilio, message_id, "delivered").status_code == 204
    assert _report(client, twilio, message_id, "sent").status_code == 204  # late, ignored
    row = message(message_id)
    assert (row.status, row.provider_status) == ("delivered", "delivered")


def test_a_report_may_come_before_the_sender_recorded_the_sid(twilio, member, client):
    person = member()
    message_id = queue(person)
    drain()
    db.session.rollback()
    row = message(message_id)
    sid = row.provider_sid
    row.provider_sid, row.status = None, "sending"  # as if the sender had not committed yet
    db.session.commit()
    assert _report(client, twilio, message_id, "delivered").status_code == 204
    row = message(message_id)
    assert (row.status, row.provider_sid, row.claim) == ("delivered", sid, None)


def test_an_undelivered_report_with_21610_withdraws_consent(twilio, member, client):
    person = member()
    message_id = queue(person)
    drain()
    assert _report(client, twilio, message_id, "undelivered", "21610").status_code == 204
    row = message(message_id)
    assert (row.status, row.error_code) == ("undelivered", "21610")
    assert db.session.get(Customer, person.id, populate_existing=True).consent_sms is False


def test_a_bad_or_missing_signature_is_403_and_changes_nothing(twilio, member, client):
    message_id = queue(member())
    drain()
    r = _report(client, twilio, message_id, "delivered", signature="bm90IGEgc2lnbmF0dXJl")
    assert r.status_code == 403
    assert r.content_type == "application/problem+json"
    assert message(message_id).status == "submitted"
    [sent] = twilio.messages
    r = client.post(f"/webhooks/twilio/status?message_id={message_id}",
                    data={"MessageSid": sent["sid"], "MessageStatus": "delivered"})
    assert r.status_code == 403
    # signed for another URL (another message id): refused too
    _, form, signature = twilio.signed_callback(sent, "delivered")
    r = client.post(f"/webhooks/twilio/status?message_id={message_id + 1}", data=form,
                    headers={"X-Twilio-Signature": signature})
    assert r.status_code == 403
    assert message(message_id).status == "submitted"


def test_without_a_twilio_token_webhooks_are_refused(client):
    r = client.post(INBOUND, data={"MessageSid": "SM1", "From": "+12125550000", "Body": "STOP"})
    assert r.status_code == 403


def _inbound(client, twilio, number, body, sid=None):
    form, signature = twilio.signed_inbound(PUBLIC + INBOUND, number, body, sid)
    return client.post(INBOUND, data=form, headers={"X-Twilio-Signature": signature})


def _consent_sources(customer_id):
    db.session.rollback()
    return db.session.scalars(select(ConsentEvent.source).where(
        ConsentEvent.customer_id == customer_id).order_by(ConsentEvent.id)).all()


def test_stop_keywords_withdraw_and_start_keywords_restore_consent(twilio, member, client):
    for stop, start in (("STOP", "START"), ("stopall", "Yes"), (" Unsubscribe. ", "UNSTOP"),
                        ("cancel", "start"), ("End", "start"), ("QUIT!", "start")):
        person = member()
        r = _inbound(client, twilio, person.phone, stop)
        assert r.status_code == 200 and r.mimetype == "text/xml"
        assert "<Message>" not in r.get_data(as_text=True)  # Twilio confirms opt-outs itself
        assert db.session.get(Customer, person.id, populate_existing=True).consent_sms is False
        r = _inbound(client, twilio, person.phone, start)
        assert "You will get our messages again" in r.get_data(as_text=True)
        assert db.session.get(Customer, person.id, populate_existing=True).consent_sms is True
        sources = _consent_sources(person.id)
        assert sources[-2:] == [f"sms:{stop.strip(' .!').upper()}",
                                f"sms:{start.upper()}"]


def test_a_stop_inside_a_sentence_is_not_an_opt_out(twilio, member, client):
    person = member()
    _inbound(client, twilio, person.phone, "please don't stop the deals")
    assert db.session.get(Customer, person.id, populate_existing=True).consent_sms is True
    [kept] = db.session.scalars(select(InboundMessage)).all()
    assert (kept.kind, kept.customer_id) == ("other", person.id)


def test_help_answers_with_the_help_text(twilio, member, client, app):
    person = member()
    r = _inbound(client, twilio, person.phone, "help")
    assert app.config["SMS_HELP_TEXT"] in r.get_data(as_text=True)


def test_twilio_delivering_an_sms_twice_acts_once(twilio, member, client):
    person = member()
    _inbound(client, twilio, person.phone, "STOP", sid="SM" + "a" * 32)
    _inbound(client, twilio, person.phone, "START", sid="SM" + "b" * 32)
    r = _inbound(client, twilio, person.phone, "STOP", sid="SM" + "a" * 32)  # a retry
    assert r.status_code == 200
    assert db.session.get(Customer, person.id, populate_existing=True).consent_sms is True
    assert len(db.session.scalars(select(InboundMessage)).all()) == 2


def test_an_sms_from_an_unknown_number_is_kept(twilio, client, factory):
    r = _inbound(client, twilio, "+12125559999", "who is this?")
    assert r.status_code == 200
    [kept] = db.session.scalars(select(InboundMessage)).all()
    assert (kept.customer_id, kept.kind, kept.body) == (None, "other", "who is this?")


def test_an_inbound_sms_missing_fields_is_a_clear_4xx(twilio, client):
    form, signature = twilio.signed_inbound(PUBLIC + INBOUND, "+12125550000", "hi")
    del form["MessageSid"]
    from twilio.request_validator import RequestValidator

    signature = RequestValidator(twilio.auth_token).compute_signature(PUBLIC + INBOUND, form)
    r = client.post(INBOUND, data=form, headers={"X-Twilio-Signature": signature})
    assert r.status_code == 422


def test_messages_and_replies_are_on_the_timeline(twilio, member, client, factory):
    person = member()
    queue(person, "Weekend sale: 20% off")
    drain()
    _inbound(client, twilio, person.phone, "sounds good")
    r = client.get(f"/api/v1/customers/{person.id}/timeline",
                   headers=factory.headers("marketing"))
    assert r.status_code == 200, r.get_json()
    labels = {item["type"]: item["label"] for item in r.get_json()["items"]}
    assert labels["sms"] == "campaign sms, submitted: Weekend sale: 20% off"
    assert labels["sms_reply"] == "other: sounds good"


def test_messages_are_in_the_customers_export(twilio, member, client, factory):
    person = member()
    queue(person, "Weekend sale")
    drain()
    _inbound(client, twilio, person.phone, "STOP")
    r = client.get(f"/api/v1/customers/{person.id}/export", headers=factory.headers("admin"))
    assert r.status_code == 200, r.get_json()
    messaging = r.get_json()["messaging"]
    assert [m["body"] for m in messaging["sms_sent"]] == ["Weekend sale"]
    assert [m["body"] for m in messaging["sms_received"]] == ["STOP"]
