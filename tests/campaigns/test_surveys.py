"""Satisfaction surveys: a purchase, an SMS, a reply or a page, and the results."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from campaigns import surveys
from campaigns.models import SurveyInvitation, SurveyResponse
from crm.db import db
from tests.campaigns.conftest import PUBLIC, drain
from tests.helpers import Till

INBOUND = "/webhooks/twilio/inbound"


@pytest.fixture
def marketing(factory):
    return factory.headers("marketing")


def _survey(client, marketing, **fields):
    body = {"name": "After purchase", "kind": "nps",
            "question": "How likely are you to recommend us to a friend?",
            "delay_hours": 2, "throttle_days": 90, **fields}
    r = client.post("/api/v1/surveys", headers=marketing, json=body)
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def _dispatch(hours_later=3):
    db.session.rollback()
    counts = surveys.dispatch(datetime.now(UTC) + timedelta(hours=hours_later))
    db.session.commit()
    return counts


def _reply(client, twilio, number, body):
    form, signature = twilio.signed_inbound(PUBLIC + INBOUND, number, body)
    r = client.post(INBOUND, data=form, headers={"X-Twilio-Signature": signature})
    assert r.status_code == 200
    return r.get_data(as_text=True)


def _invitations():
    db.session.rollback()
    return db.session.scalars(select(SurveyInvitation).order_by(SurveyInvitation.id)).all()


def test_survey_round_trip_purchase_sms_reply_results(client, twilio, member, till,
                                                      marketing):
    survey = _survey(client, marketing)
    person = member()
    till.buy({"phone": person.phone})
    [inv] = _invitations()
    assert (inv.status, inv.customer_id) == ("scheduled", person.id)
    assert _dispatch(hours_later=1) == {"invited": 0, "throttled": 0, "no_consent": 0,
                                         "no_phone": 0}  # not due before delay_hours
    assert _dispatch()["invited"] == 1
    drain()
    [sms] = twilio.sent_to(person.phone)
    assert sms["body"].startswith("How likely are you to recommend us to a friend? Reply "
                                  "with a number from 0 to 10")
    assert re.search(r"https://crm\.example\.com/s/[\w.-]+ ", sms["body"])
    assert "Thank you" in _reply(client, twilio, person.phone, "9 - lovely staff")
    r = client.get(f"/api/v1/surveys/{survey['id']}/results", headers=marketing)
    assert r.status_code == 200, r.get_json()
    results = r.get_json()
    assert {k: results[k] for k in ("responses", "nps", "promoters", "passives",
                                    "detractors", "invited", "response_rate")} == \
        {"responses": 1, "nps": 100, "promoters": 1, "passives": 0, "detractors": 0,
         "invited": 1, "response_rate": 100}
    assert results["by_store"] == [{"store": till.store, "responses": 1, "promoters": 1,
                                    "passives": 0, "detractors": 0, "nps": 100}]
    [comment] = results["comments"]
    assert (comment["score"], comment["comment"], comment["channel"]) == \
        (9, "lovely staff", "sms")
    # answered once: a second reply is just a message
    assert "Thank you" not in _reply(client, twilio, person.phone, "10")
    r = client.get(f"/api/v1/customers/{person.id}/timeline", headers=marketing)
    types = [item["type"] for item in r.get_json()["items"]]
    assert {"survey_answer", "sms", "sms_reply", "purchase"} <= set(types)


def test_an_sms_answer_out_of_range_is_asked_again(client, twilio, member, till, marketing):
    _survey(client, marketing)
    person = member()
    till.buy({"phone": person.phone})
    _dispatch()
    assert "from 0 to 10" in _reply(client, twilio, person.phone, "11")
    assert "from 0 to 10" in _reply(client, twilio, person.phone, "great!")
    assert db.session.scalars(select(SurveyResponse)).all() == []
    assert "Thank you" in _reply(client, twilio, person.phone, "0")
    [answer] = db.session.scalars(select(SurveyResponse)).all()
    assert (answer.score, answer.comment) == (0, None)


def _link(twilio, number):
    [sms] = twilio.sent_to(number)
    return re.search(r"https://crm\.example\.com(/s/[\w.-]+)", sms["body"]).group(1)


def test_the_survey_page_answers_once(client, twilio, member, till, marketing):
    survey = _survey(client, marketing, kind="csat", question="How was your visit today?")
    person = member()
    till.buy({"phone": person.phone})
    _dispatch()
    drain()
    path = _link(twilio, person.phone)
    page = client.get(path)
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "How was your visit today?" in html and 'name="viewport"' in html
    assert [int(n) for n in re.findall(r'name="score" value="(\d+)"', html)] == [1, 2, 3, 4, 5]
    bad = client.post(path, data={"score": "7"})
    assert bad.status_code == 422 and "from 1 to 5" in bad.get_data(as_text=True)
    assert client.post(path, data={"score": "4", "comment": "Quick checkout"}).status_code == 200
    again = client.post(path, data={"score": "1"})
    assert again.status_code == 410 and "answered already" in again.get_data(as_text=True)
    assert client.get(path).status_code == 410
    results = client.get(f"/api/v1/surveys/{survey['id']}/results",
                         headers=marketing).get_json()
    assert (results["csat"], results["responses"], results["comments"][0]["channel"]) == \
        (100, 1, "web")


def test_forged_and_expired_links_are_refused(client, twilio, member, till, marketing, app):
    _survey(client, marketing)
    person = member()
    till.buy({"phone": person.phone})
    _dispatch()
    drain()
    path = _link(twilio, person.phone)
    assert client.get(path[:-2] + "xx").status_code == 404
    assert client.get("/s/" + surveys.token_for(10**6)).status_code == 404
    assert client.post(path[:-2] + "xx", data={"score": "5"}).status_code == 404
    app.config["SURVEY_ANSWER_DAYS"] = -1  # the link's signed time is too old
    try:
        assert client.get(path).status_code == 410
    finally:
        app.config["SURVEY_ANSWER_DAYS"] = 7
    [inv] = _invitations()
    inv.expires_at = datetime.now(UTC) - timedelta(minutes=1)
    db.session.commit()
    r = client.post(path, data={"score": "5"})
    assert r.status_code == 410 and "closed" in r.get_data(as_text=True)
    assert "Thank you" not in _reply(client, twilio, person.phone, "5")
    assert db.session.scalars(select(SurveyResponse)).all() == []


def test_surveys_are_throttled_dropped_without_consent_or_phone(client, twilio, member,
                                                                 till, marketing, factory):
    _survey(client, marketing)
    _survey(client, marketing, name="Second survey", delay_hours=0)
    regular, silent = member(), member(consent=False)
    emailed = factory.customer(email="no-phone@example.com", consent={"sms": True})
    till.buy({"phone": regular.phone})
    till.buy({"phone": regular.phone})
    till.buy({"phone": silent.phone})
    till.buy({"email": "no-phone@example.com"})
    counts = _dispatch()
    # the regular customer: one invitation sent of the four (two surveys, two sales)
    assert counts == {"invited": 1, "throttled": 3, "no_consent": 2, "no_phone": 2}
    assert len(_dispatch()) == 4 and sum(_dispatch().values()) == 0  # nothing left to do
    drain()
    assert [m["to"] for m in twilio.messages] == [regular.phone]
    by_customer = {}
    for inv in _invitations():
        by_customer.setdefault(inv.customer_id, set()).add(inv.status)
    assert by_customer == {regular.id: {"invited", "throttled"}, silent.id: {"no_consent"},
                           emailed.id: {"no_phone"}}


def test_throttle_days_zero_invites_every_time(client, twilio, member, till, marketing):
    _survey(client, marketing, throttle_days=0)
    person = member()
    till.buy({"phone": person.phone})
    _dispatch()
    till.buy({"phone": person.phone})
    assert _dispatch(hours_later=4)["invited"] == 1


def test_a_claimed_anonymous_purchase_gets_its_survey(client, twilio, member, till,
                                                      marketing, factory):
    _survey(client, marketing)
    person = member()
    sale = till.buy(None).get_json()
    assert _invitations() == []
    r = client.post(f"/api/v1/purchases/{sale['id']}/claim", headers=till.headers,
                    json={"customer": {"phone": person.phone}})
    assert r.status_code == 200, r.get_json()
    [inv] = _invitations()
    assert inv.customer_id == person.id


def test_an_inactive_survey_sends_nothing(client, twilio, member, till, marketing):
    survey = _survey(client, marketing)
    r = client.patch(f"/api/v1/surveys/{survey['id']}", headers=marketing,
                     json={"active": False})
    assert r.status_code == 200 and r.get_json()["active"] is False
    till.buy({"phone": member().phone})
    assert _invitations() == []


def _answer(client, twilio, till, person, score):
    till.buy({"phone": person.phone})
    _dispatch(hours_later=3)
    assert "Thank you" in _reply(client, twilio, person.phone, str(score))


def test_nps_by_store_and_period(client, twilio, member, till, marketing, factory):
    survey = _survey(client, marketing, delay_hours=0)
    other = Till(client, factory.headers("pos", store=factory.store(
        "LYO", currency="EUR").code), "LYO")
    for score in (10, 9, 8, 7, 6, 0, 10):
        _answer(client, twilio, till, member(), score)
    _answer(client, twilio, other, member(), 3)
    url = f"/api/v1/surveys/{survey['id']}/results"
    results = client.get(url, headers=marketing).get_json()
    assert (results["responses"], results["promoters"], results["passives"],
            results["detractors"], results["nps"]) == (8, 3, 2, 3, 0)
    assert [(s["store"], s["responses"], s["nps"]) for s in results["by_store"]] == \
        [("LYO", 1, -100), (till.store, 7, 14)]  # (3 - 2) / 7 = 14.3%
    only = client.get(f"{url}?store={till.store}", headers=marketing).get_json()
    assert (only["responses"], only["nps"]) == (7, 14)
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    r = client.get(url, headers=marketing, query_string={"from": later})
    assert (r.get_json()["responses"], r.get_json()["nps"]) == (0, None)
    assert client.get(f"{url}?from=yesterday", headers=marketing).status_code == 422
    assert client.get(f"{url}?colour=red", headers=marketing).status_code == 422
    assert client.get("/api/v1/surveys/999/results", headers=marketing).status_code == 404


def test_survey_settings_are_validated(client, marketing, factory):
    for bad in ({"kind": "stars"}, {"delay_hours": -1}, {"throttle_days": 10**6},
                {"question": ""}, {"trigger": "birthday"}, {"channel": "email"}):
        r = client.post("/api/v1/surveys", headers=marketing, json={
            "name": "x", "kind": "nps", "question": "Q?", **bad})
        assert r.status_code == 422, bad
        assert r.content_type == "application/problem+json"
    assert client.get("/api/v1/surveys", headers=factory.headers("pos")).status_code == 403
    survey = _survey(client, marketing)
    r = client.get("/api/v1/surveys", headers=marketing)
    assert [s["id"] for s in r.get_json()["items"]] == [survey["id"]]
    assert client.get(f"/api/v1/surveys/{survey['id']}", headers=marketing).status_code == 200


def test_an_erased_customer_gets_no_survey_and_keeps_no_comment(client, twilio, member, till,
                                                                 marketing, factory):
    survey = _survey(client, marketing)
    person = member()
    till.buy({"phone": person.phone})
    _dispatch()
    _reply(client, twilio, person.phone, "8 nice")
    till.buy({"phone": person.phone})
    r = client.delete(f"/api/v1/customers/{person.id}", headers=factory.headers("admin"))
    assert r.status_code == 200, r.get_json()
    assert [inv.status for inv in _invitations()] == ["answered", "canceled"]
    results = client.get(f"/api/v1/surveys/{survey['id']}/results",
                         headers=marketing).get_json()
    assert (results["responses"], results["comments"]) == (1, [])


@pytest.mark.parametrize(("text", "score", "comment"), [
    ("10", 10, None), ("10.", 10, None), ("9 great", 9, "great"), ("7, ok-ish", 7, "ok-ish"),
    ("10.5", None, None), ("10,5", None, None), ("100", None, None), ("1.5 meh", None, None)])
def test_sms_answers_are_read_whole(client, twilio, member, till, marketing, text, score,
                                    comment):
    _survey(client, marketing)
    person = member()
    till.buy({"phone": person.phone})
    _dispatch()
    _reply(client, twilio, person.phone, text)
    answers = db.session.scalars(select(SurveyResponse)).all()
    assert [(a.score, a.comment) for a in answers] == ([(score, comment)] if score is not None
                                                       else [])
