"""Survey results over time and their comments (``surveys.trend``, ``surveys.comments``
and their routes), and each message's delivery history (``GET /messages/{id}``)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select, update

from campaigns import surveys
from campaigns.models import SurveyResponse
from crm.db import db
from crm.models import AuditLog
from tests.campaigns.conftest import PUBLIC, drain, queue
from tests.helpers import Till


@pytest.fixture
def marketing(factory):
    return factory.headers("marketing")


def _survey(client, marketing, kind="nps"):
    r = client.post("/api/v1/surveys", headers=marketing, json={
        "name": "After purchase", "kind": kind, "delay_hours": 0,
        "question": "How likely are you to recommend us to a friend?"})
    assert r.status_code == 201, r.get_json()
    return r.get_json()["id"]


def _answer_on_the_page(client, twilio, till, person, score, comment=None):
    """A purchase, the invitation by SMS, and the answer posted on its page."""
    till.buy({"phone": person.phone})
    db.session.rollback()
    surveys.dispatch(datetime.now(UTC) + timedelta(minutes=1))
    db.session.commit()
    drain()
    [sms] = twilio.sent_to(person.phone)
    path = re.search(re.escape(PUBLIC) + r"(/s/[\w.-]+)", sms["body"]).group(1)
    form = {"score": str(score), **({"comment": comment} if comment else {})}
    assert client.post(path, data=form).status_code == 200


def _move(days_ago: int, *scores: int) -> None:
    """Date the answers with these scores ``days_ago`` (as if they came then)."""
    db.session.rollback()
    db.session.execute(update(SurveyResponse).where(SurveyResponse.score.in_(scores))
                       .values(created_at=datetime.now(UTC) - timedelta(days=days_ago)))
    db.session.commit()


def _week(days_ago: int) -> str:
    return surveys.week_of((datetime.now(UTC) - timedelta(days=days_ago)).date())


def test_nps_by_iso_week_with_empty_weeks_and_per_store(client, twilio, member, till,
                                                        marketing, factory):
    survey_id = _survey(client, marketing)
    other = Till(client, factory.headers("pos", store=factory.store(
        "LYO", currency="EUR").code), "LYO")
    for score in (10, 9, 3):  # 21 days ago: 2 promoters, 1 detractor -> 33
        _answer_on_the_page(client, twilio, till, member(), score)
    for score in (8, 0):  # this week: 1 passive, 1 detractor -> -50
        _answer_on_the_page(client, twilio, till, member(), score)
    _answer_on_the_page(client, twilio, other, member(), 7)  # this week, LYO: 0
    _move(21, 10, 9, 3)
    weeks = client.get(f"/api/v1/surveys/{survey_id}/trend", headers=marketing).get_json()
    assert weeks["kind"] == "nps"
    rows = [(w["week"], w["responses"], w["promoters"], w["passives"], w["detractors"],
             w["nps"]) for w in weeks["weeks"]]
    assert rows[0] == (_week(21), 3, 2, 0, 1, 33)
    assert rows[-1] == (_week(0), 3, 0, 2, 1, -33)
    assert len(rows) in (4, 5)  # the weeks between are there, empty
    assert all(r[1:] == (0, 0, 0, 0, None) for r in rows[1:-1])
    assert date.fromisoformat(weeks["weeks"][0]["week_start"]).weekday() == 0
    # the same figures as the results, week by week
    total = client.get(f"/api/v1/surveys/{survey_id}/results", headers=marketing).get_json()
    assert sum(w["responses"] for w in weeks["weeks"]) == total["responses"] == 6
    only = client.get(f"/api/v1/surveys/{survey_id}/trend?store=LYO",
                      headers=marketing).get_json()["weeks"]
    assert [(w["week"], w["responses"], w["nps"]) for w in only] == [(_week(0), 1, 0)]
    since = (datetime.now(UTC) - timedelta(days=7)).isoformat()
    recent = client.get(f"/api/v1/surveys/{survey_id}/trend", headers=marketing,
                        query_string={"from": since}).get_json()["weeks"]
    assert [(w["responses"], w["nps"]) for w in recent] == [(3, -33)]
    for bad in ("?from=soon", "?store=", "?colour=red"):
        assert client.get(f"/api/v1/surveys/{survey_id}/trend{bad}",
                          headers=marketing).status_code == 422
    assert client.get("/api/v1/surveys/999/trend", headers=marketing).status_code == 404
    assert surveys.trend(_survey(client, marketing)) == []


def test_csat_weeks_count_4_and_5_as_satisfied(client, twilio, member, till, marketing):
    survey_id = _survey(client, marketing, kind="csat")
    for score in (5, 4, 3, 1):
        _answer_on_the_page(client, twilio, till, member(), score)
    [week] = client.get(f"/api/v1/surveys/{survey_id}/trend",
                        headers=marketing).get_json()["weeks"]
    assert (week["responses"], week["promoters"], week["passives"], week["detractors"],
            week["csat"]) == (4, 2, 1, 1, 50)


def test_comments_filtered_by_store_score_band_and_period_newest_first(
        client, twilio, member, till, marketing, factory):
    survey_id = _survey(client, marketing)
    other = Till(client, factory.headers("pos", store=factory.store(
        "LYO", currency="EUR").code), "LYO")
    for score, comment in ((10, "Lovely staff"), (2, "Long queue"), (8, "Fine")):
        _answer_on_the_page(client, twilio, till, member(), score, comment)
    _answer_on_the_page(client, twilio, till, member(), 9)  # no comment: not listed
    _answer_on_the_page(client, twilio, other, member(), 1, "Closed early")
    _move(10, 2)
    url = f"/api/v1/surveys/{survey_id}/comments"

    def listed(**query):
        r = client.get(url, headers=marketing, query_string=query)
        assert r.status_code == 200, r.get_json()
        return [c["comment"] for c in r.get_json()["items"]]

    assert listed() == ["Closed early", "Fine", "Lovely staff", "Long queue"]
    assert listed(store=till.store) == ["Fine", "Lovely staff", "Long queue"]
    assert listed(score=10) == ["Lovely staff"]
    assert listed(band="detractors") == ["Closed early", "Long queue"]
    assert listed(band="passives") == ["Fine"]
    assert listed(band="promoters", store="LYO") == []
    since = (datetime.now(UTC) - timedelta(days=5)).isoformat()
    assert listed(**{"from": since, "band": "detractors"}) == ["Closed early"]
    page = client.get(url, headers=marketing, query_string={"page_size": 3, "page": 2})
    assert [c["comment"] for c in page.get_json()["items"]] == ["Long queue"]
    assert '"total": 4' in page.headers["X-Pagination"]
    for bad in ({"score": 11}, {"band": "fans"}, {"page_size": 101}, {"to": "later"}):
        assert client.get(url, headers=marketing, query_string=bad).status_code == 422


def test_survey_changes_are_audited(client, marketing):
    survey_id = _survey(client, marketing)
    r = client.patch(f"/api/v1/surveys/{survey_id}", headers=marketing,
                     json={"delay_hours": 4, "active": False})
    assert r.status_code == 200
    db.session.rollback()
    rows = db.session.scalars(select(AuditLog).where(
        AuditLog.object_type == "survey", AuditLog.object_id == str(survey_id))
        .order_by(AuditLog.id)).all()
    assert [r.action for r in rows] == ["create", "update"]
    assert rows[0].actor.startswith("key:")
    assert rows[1].fields == ["active", "delay_hours"]
    assert (rows[1].before, rows[1].after) == ({"active": True, "delay_hours": 0},
                                               {"active": False, "delay_hours": 4})


def _report(client, twilio, message_id, status, error_code=None):
    [sent] = [m for m in twilio.messages if m["status_callback"].endswith(f"={message_id}")]
    url, form, signature = twilio.signed_callback(sent, status, error_code)
    r = client.post(url.removeprefix(PUBLIC), data=form,
                    headers={"X-Twilio-Signature": signature})
    assert r.status_code == 204


def test_a_message_shows_each_delivery_report_in_the_order_it_came(client, twilio, member,
                                                                    marketing):
    message_id = queue(member())
    drain()
    for status in ("sent", "delivered", "sent", "unheard-of"):
        _report(client, twilio, message_id, status)
    r = client.get(f"/api/v1/messages/{message_id}", headers=marketing)
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["status"] == "delivered"
    assert [(h["provider_status"], h["status"], h["applied"]) for h in body["history"]] == [
        ("sent", "sent", True), ("delivered", "delivered", True),
        ("sent", "sent", False), ("unheard-of", None, False)]
    other = queue(member())
    drain()
    _report(client, twilio, other, "undelivered", "30003")
    [event] = client.get(f"/api/v1/messages/{other}", headers=marketing).get_json()["history"]
    assert (event["status"], event["error_code"], event["applied"]) == \
        ("undelivered", "30003", True)
    assert client.get("/api/v1/messages/99999", headers=marketing).status_code == 404
