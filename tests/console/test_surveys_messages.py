"""The surveys and messages screens through Flask's test client: who may change a
survey, that it is recorded with the user, errors kept with what was typed, the results'
filters, the outbox's filters, and phone numbers masked except to admins."""

from __future__ import annotations

import re

from sqlalchemy import select

from campaigns import outbox
from campaigns.models import Survey
from console import users
from crm.db import db
from crm.models import AuditLog
from tests.console.conftest import fresh

PASSWORD = "a long enough password"
NEW = {"name": "After the visit", "kind": "nps", "question": "Would you recommend us?",
       "delay_hours": "2", "throttle_days": "90", "active": "on"}


def _signed_in(client, role):
    fresh()
    user = users.create_user(f"{role}@example.com", role, PASSWORD)
    db.session.commit()
    c = client.application.test_client()
    def token(path):
        return re.search(r'name="csrf-token" content="([^"]+)"',
                         c.get(path).get_data(as_text=True)).group(1)

    c.post("/console/login", data={"email": f"{role}@example.com", "password": PASSWORD,
                                   "csrf_token": token("/console/login")})
    return c, token("/console/"), user


def test_only_marketers_and_admins_create_and_edit_surveys_recorded_with_the_user(
        client, factory):
    viewer, vtoken, _ = _signed_in(client, "viewer")
    marketer, token, user = _signed_in(client, "marketer")
    assert viewer.get("/console/surveys").status_code == 200
    assert viewer.post("/console/surveys", data={**NEW, "csrf_token": vtoken}).status_code == 403
    assert marketer.post("/console/surveys", data=NEW).status_code == 400  # no CSRF token
    created = marketer.post("/console/surveys", data={**NEW, "csrf_token": token})
    assert created.status_code == 302
    fresh()
    survey = db.session.scalar(select(Survey))
    assert created.headers["Location"] == f"/console/surveys/{survey.id}/results"
    assert viewer.post(f"/console/surveys/{survey.id}", data={
        **NEW, "delay_hours": "5", "csrf_token": vtoken}).status_code == 403
    page = viewer.get(f"/console/surveys/{survey.id}").get_data(as_text=True)
    assert "Save survey" not in page and "A marketer can change this survey." in page
    saved = marketer.post(f"/console/surveys/{survey.id}", data={
        **NEW, "delay_hours": "5", "csrf_token": token})
    assert saved.status_code == 302
    fresh()
    assert db.session.get(Survey, survey.id).delay_hours == 5
    rows = db.session.scalars(select(AuditLog).where(AuditLog.object_type == "survey")
                              .order_by(AuditLog.id)).all()
    actor = f"user:{user.id}:marketer@example.com"
    assert [(r.action, r.actor) for r in rows] == [("create", actor), ("update", actor)]
    assert (rows[1].before, rows[1].after) == ({"delay_hours": 2}, {"delay_hours": 5})


def test_a_bad_survey_keeps_what_was_typed_and_saves_nothing(client, factory):
    marketer, token, _ = _signed_in(client, "marketer")
    answer = marketer.post("/console/surveys", data={
        **NEW, "question": "Kept as typed?", "delay_hours": "-3", "csrf_token": token})
    assert answer.status_code == 422
    html = answer.get_data(as_text=True)
    assert 'id="new-delay_hours-error"' in html and 'value="Kept as typed?"' in html
    assert 'aria-describedby="new-delay_hours-error"' in html
    fresh()
    assert db.session.scalars(select(Survey)).all() == []
    assert db.session.scalars(select(AuditLog).where(
        AuditLog.object_type == "survey")).all() == []


def test_results_filters_are_checked_one_by_one(client, factory):
    marketer, token, _ = _signed_in(client, "marketer")
    marketer.post("/console/surveys", data={**NEW, "csrf_token": token})
    fresh()
    survey = db.session.scalar(select(Survey))
    url = f"/console/surveys/{survey.id}/results"
    assert marketer.get(url).status_code == 200
    bad = marketer.get(url, query_string={"store": "NOPE", "from": "yesterday",
                                          "score": "11"})
    assert bad.status_code == 422
    html = bad.get_data(as_text=True)
    for name in ("store", "from", "score"):
        assert f'id="filter-{name}-error"' in html
    backwards = marketer.get(url, query_string={"from": "2026-12-01", "to": "2026-11-01"})
    assert 'id="filter-to-error"' in backwards.get_data(as_text=True)
    assert marketer.get(url, query_string={"score": "detractors", "page": "x"}).status_code == 200
    assert marketer.get("/console/surveys/999/results").status_code == 404


def test_the_outbox_filters_and_masks_numbers_except_for_admins(client, factory):
    a = factory.customer(phone="+12125550161", consent={"sms": True})
    b = factory.customer(phone="+12125550162", consent={"sms": True})
    fresh()
    first = outbox.queue(a, "Welcome back", "campaign", campaign_id=7)
    outbox.queue(b, "How was it?", "survey")
    db.session.flush()
    outbox.apply_status(first.id, "SM123", "delivered")
    db.session.commit()
    marketer, _, _ = _signed_in(client, "marketer")
    admin, _, _ = _signed_in(client, "admin")
    page = marketer.get("/console/messages").get_data(as_text=True)
    assert "***0161" in page and "+12125550161" not in page
    assert "+12125550161" in admin.get("/console/messages").get_data(as_text=True)

    def listed(c, **query):
        html = c.get("/console/messages", query_string=query).get_data(as_text=True)
        return re.findall(r">Message (\d+)</a>", html)

    assert listed(marketer) == [str(first.id + 1), str(first.id)]
    assert listed(marketer, purpose="campaign") == [str(first.id)]
    assert listed(marketer, campaign_id="7") == [str(first.id)]
    assert listed(marketer, customer_id=str(b.id)) == [str(first.id + 1)]
    assert listed(marketer, status="delivered") == [str(first.id)]
    assert listed(marketer, status="queued", purpose="campaign") == []
    bad = marketer.get("/console/messages", query_string={"status": "lost",
                                                          "campaign_id": "seven"})
    assert bad.status_code == 422
    html = bad.get_data(as_text=True)
    assert 'id="filter-status-error"' in html and 'id="filter-campaign_id-error"' in html
    detail = marketer.get(f"/console/messages/{first.id}").get_data(as_text=True)
    assert "***0161" in detail and "+12125550161" not in detail
    assert "moved the message on" in detail and "delivered" in detail
    assert "+12125550161" in admin.get(f"/console/messages/{first.id}").get_data(as_text=True)
    assert marketer.get("/console/messages/99999").status_code == 404
    assert client.application.test_client().get("/console/messages").status_code == 302
