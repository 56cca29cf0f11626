"""The campaign screens through Flask's test client: the wizard's draft keeps what was
typed through Back, Next and errors; the review's counts are those a run then writes;
tests go through the outbox to the fake Twilio; the report's figures and CSV are the
API's; viewers read only; every change is recorded with the user."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from html import unescape as html_unescape
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from campaigns import planner
from campaigns.models import Campaign, CampaignRecipient, Message, Segment
from console import campaign_drafts
from console.campaign_views import report_rows
from crm.db import db
from crm.models import AuditLog
from tests.campaigns import conftest as messaging
from tests.campaigns.conftest import drain
from tests.console.conftest import PASSWORD, fresh

twilio = messaging.twilio  # the fake Twilio of the messaging tests


def _token(client, path: str = "/console/login") -> str:
    html = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)


def signed_in(client, role: str):
    token = _token(client)
    client.post("/console/login", data={"email": f"{role}@demo.example.com",
                                        "password": PASSWORD, "csrf_token": token})
    return _token(client, "/console/campaigns")


def _new_draft(client, token) -> str:
    answer = client.post("/console/campaigns/new", data={"csrf_token": token})
    assert answer.status_code == 302
    return answer.headers["Location"].rsplit("/", 1)[0]  # /console/campaigns/drafts/N


def _step(client, token, base, slug, go="next", **fields):
    return client.post(f"{base}/{slug}", data={"csrf_token": token, "go": go, **fields})


def _segment_id(name: str = "Agreed to SMS (demo)") -> int:
    fresh()
    return db.session.scalar(select(Segment.id).where(Segment.name == name))


def _walk(client, token, base, template="Hi {name}, {points} points wait for you.",
          at=None, **delivery):
    at = at or (datetime.now(UTC) - timedelta(minutes=1)).astimezone(
        ZoneInfo("America/New_York")).strftime("%Y-%m-%dT%H:%M")
    assert _step(client, token, base, "segment", name="Winter",
                 segment_id=str(_segment_id())).status_code == 302
    assert _step(client, token, base, "message", template=template).status_code == 302
    assert _step(client, token, base, "offer", offer_id="").status_code == 302
    assert _step(client, token, base, "schedule", schedule_kind="at",
                 at=at).status_code == 302
    fields = {"holdout_percent": "20", "reentry_days": "30", "attribution_days": "14",
              "quiet_start": "", "quiet_end": "", "cap_count": "", "cap_days": "",
              **delivery}
    return _step(client, token, base, "delivery", **fields)


def test_back_next_and_errors_keep_everything_typed(client, demo):
    token = signed_in(client, "marketer")
    base = _new_draft(client, token)
    _step(client, token, base, "segment", name="Winter", segment_id=str(_segment_id()))
    template = "Hi {name} — {nope} is not a field"
    bad = _step(client, token, base, "message", template=template)
    assert bad.status_code == 422
    html = bad.get_data(as_text=True)
    assert 'id="template-error"' in html and "Unknown field {nope}" in html
    assert "Hi {name} — {nope} is not a field</textarea>" in html
    # Back without fixing it: nothing is checked, nothing is lost
    back = _step(client, token, base, "message", go="back", template=template)
    assert back.headers["Location"].endswith("/segment")
    page = client.get(f"{base}/segment").get_data(as_text=True)
    assert 'value="Winter"' in page
    forward = client.get(f"{base}/message").get_data(as_text=True)
    assert "{nope} is not a field</textarea>" in forward
    # a step link saves too
    jump = _step(client, token, base, "message", go="step:schedule",
                 template="Hi {name}, still here")
    assert jump.headers["Location"].endswith("/schedule")
    assert "Hi {name}, still here</textarea>" in client.get(f"{base}/message").get_data(
        as_text=True)
    # the schedule's errors are the API's (a cron that does not parse)
    bad = _step(client, token, base, "schedule", schedule_kind="cron", cron="every day")
    assert bad.status_code == 422 and 'id="cron-error"' in bad.get_data(as_text=True)
    assert 'value="every day"' in bad.get_data(as_text=True)
    fresh()
    assert db.session.scalar(select(func.count()).select_from(Campaign)) == 1  # the demo's


def test_empty_required_fields_are_said_plainly_and_offers_read_as_terms(client, demo):
    """Found walking the wizard as a new user: Next on an empty first step said "Not a
    valid integer." for the segment, and the offer list showed "percent 1E+1"."""
    token = signed_in(client, "marketer")
    base = _new_draft(client, token)
    empty = _step(client, token, base, "segment").get_data(as_text=True)
    assert "Give the campaign a name." in empty and "Choose a segment." in empty
    assert "Not a valid integer" not in empty
    _step(client, token, base, "segment", name="W", segment_id=str(_segment_id()))
    assert "Write the message." in _step(client, token, base, "message",
                                         template="").get_data(as_text=True)
    offers = client.get(f"{base}/offer").get_data(as_text=True)
    assert "Demo 10% off (10% off)" in offers and "1E+1" not in offers


def test_the_preview_renders_for_a_real_member_as_the_run_does(client, demo):
    token = signed_in(client, "marketer")
    base = _new_draft(client, token)
    segment_id = _segment_id()
    _step(client, token, base, "segment", name="Winter", segment_id=str(segment_id))
    answer = client.post(f"{base}/preview", data={"template": "Hi {first_name} ✓"},
                         headers={"X-CSRFToken": token, "HX-Request": "true"})
    html = answer.get_data(as_text=True)
    customer_id = int(re.search(r"customer (\d+)\)", html).group(1))
    fresh()
    expected = planner.sample_message(segment_id, "Hi {first_name} ✓", datetime.now(UTC))
    assert expected["customer_id"] == customer_id
    assert f'id="preview-body">{expected["body"]}<' in html
    assert "UCS-2" in html  # ✓ is not in the GSM alphabet
    # what the preview was given is in the draft too
    draft_id = int(base.rsplit("/", 1)[1])
    assert db.session.get(campaign_drafts.CampaignDraft, draft_id).values["template"] == \
        "Hi {first_name} ✓"


def test_the_review_counts_are_what_the_run_queues(client, demo):
    token = signed_in(client, "marketer")
    base = _new_draft(client, token)
    done = _walk(client, token, base)
    assert done.status_code == 302, done.get_data(as_text=True)
    review_url = done.headers["Location"]
    campaign_id = int(re.search(r"/campaigns/(\d+)/review", review_url).group(1))
    html = client.get(review_url).get_data(as_text=True)

    def figure(name):
        return int(re.search(rf'id="review-{name}">([\d,]+)<', html).group(1).replace(",", ""))

    shown = {n: figure(n) for n in ("audience", "holdout", "targeted", "no_consent",
                                    "no_phone", "capped", "queued", "quiet", "messages")}
    assert shown["audience"] > 0 and shown["holdout"] > 0
    assert client.post(f"/console/campaigns/{campaign_id}/activate",
                       data={"csrf_token": token}).status_code == 302
    fresh()
    assert db.session.get(Campaign, campaign_id).status == "active"
    counts = planner.run_due()
    db.session.commit()
    fresh()
    statuses = dict(db.session.execute(
        select(CampaignRecipient.status, func.count())
        .where(CampaignRecipient.campaign_id == campaign_id)
        .group_by(CampaignRecipient.status)).all())
    queued = db.session.scalar(select(func.count()).select_from(Message).where(
        Message.campaign_id == campaign_id))
    assert counts["runs"] == 1
    assert shown["messages"] == queued == shown["queued"] + shown["quiet"]
    assert shown["holdout"] == statuses.get("holdout", 0)
    assert shown["audience"] == sum(statuses.values())
    for reason in ("no_consent", "no_phone", "capped", "queued", "quiet"):
        assert shown[reason] == statuses.get(reason, 0), reason


def test_send_a_test_to_me_goes_through_the_outbox_marked_as_a_test(client, demo, twilio):
    token = signed_in(client, "marketer")
    base = _new_draft(client, token)
    _step(client, token, base, "segment", name="Winter", segment_id=str(_segment_id()))
    bad = _step(client, token, base, "message", go="test", template="Hi {name}",
                test_phone="12")
    assert bad.status_code == 422 and 'id="test_phone-error"' in bad.get_data(as_text=True)
    sent = _step(client, token, base, "message", go="test", template="Hi {name}!",
                 test_phone="(415) 555-2671")
    assert sent.status_code == 302 and sent.headers["Location"].endswith("/message")
    fresh()
    message = db.session.scalar(select(Message).where(Message.purpose == "test"))
    assert message.to_number == "+14155552671" and message.customer_id is None
    assert message.body.startswith("Hi ") and message.body.endswith("!")
    drain()
    assert [m["body"] for m in twilio.sent_to("+14155552671")] == [message.body]
    audit = db.session.scalar(select(AuditLog).where(AuditLog.action == "send_test"))
    assert audit.actor.endswith(":marketer@demo.example.com")
    assert "+14155552671" not in str(audit.before) + str(audit.after)


def test_send_a_test_from_the_review_step_sends_what_the_review_shows(client, demo, twilio):
    token = signed_in(client, "marketer")
    done = _walk(client, token, _new_draft(client, token))
    review_url = done.headers["Location"]
    campaign_id = int(re.search(r"/campaigns/(\d+)/review", review_url).group(1))
    draft_id = re.search(r"draft=(\d+)", review_url).group(1)
    html = client.get(review_url).get_data(as_text=True)
    assert "Send a test to me" in html
    shown = re.search(r'<blockquote class="sms-preview">(.*?)</blockquote>', html, re.S).group(1)
    bad = client.post(f"/console/campaigns/{campaign_id}/test",
                      data={"csrf_token": token, "draft": draft_id, "test_phone": "12"})
    assert bad.status_code == 422
    page = bad.get_data(as_text=True)
    assert 'id="test_phone-error"' in page and 'id="review-audience"' in page
    sent = client.post(f"/console/campaigns/{campaign_id}/test",
                       data={"csrf_token": token, "draft": draft_id,
                             "test_phone": "(415) 555-2671"})
    assert sent.status_code == 302
    assert sent.headers["Location"].endswith(f"/campaigns/{campaign_id}/review?draft={draft_id}")
    fresh()
    message = db.session.scalar(select(Message).where(Message.purpose == "test"))
    assert message.campaign_id == campaign_id and message.customer_id is None
    assert html_unescape(shown.strip()) == message.body
    drain()
    assert [m["body"] for m in twilio.sent_to("+14155552671")] == [message.body]
    # the test is no recipient of the campaign: its run and report do not count it
    assert db.session.scalar(select(func.count()).select_from(CampaignRecipient)
                             .where(CampaignRecipient.campaign_id == campaign_id)) == 0
    viewer = signed_in(client, "viewer")
    assert client.post(f"/console/campaigns/{campaign_id}/test", data={
        "csrf_token": viewer, "test_phone": "+14155552671"}).status_code == 403


def test_tests_are_limited_per_user_per_hour(client, demo, app):
    app.config["CONSOLE_TEST_SMS_PER_HOUR"] = 2
    try:
        token = signed_in(client, "marketer")
        base = _new_draft(client, token)
        _step(client, token, base, "segment", name="W", segment_id=str(_segment_id()))
        codes = [_step(client, token, base, "message", go="test", template="Hi",
                       test_phone="+14155552671").status_code for _ in range(3)]
    finally:
        app.config.pop("CONSOLE_TEST_SMS_PER_HOUR")
    assert codes == [302, 302, 422]
    fresh()
    assert db.session.scalar(select(func.count()).select_from(Message)
                             .where(Message.purpose == "test")) == 2


def test_the_report_page_and_csv_are_the_apis_figures(client, demo, factory):
    fresh()
    campaign_id = db.session.scalar(select(Campaign.id).where(
        Campaign.name == "Welcome back (demo)"))
    api = client.get(f"/api/v1/campaigns/{campaign_id}/report",
                     headers=factory.headers("marketing")).get_json()
    signed_in(client, "viewer")
    html = client.get(f"/console/campaigns/{campaign_id}/report").get_data(as_text=True)
    for key in ("queued", "sent", "delivered", "failed", "opted_out"):
        assert re.search(rf'id="funnel-{key}">{api[key]:,}<', html), key
    rows = report_rows(api)
    for _, figure, a, b in rows:
        assert f"<th scope=\"row\">{figure}</th><td>{a}</td><td>{b}</td>" in html, figure
    answer = client.get(f"/console/campaigns/{campaign_id}/report.csv")
    assert answer.mimetype == "text/csv"
    got = list(csv.reader(io.StringIO(answer.get_data(as_text=True))))
    assert got[0] == ["section", "figure", "targeted_or_value", "holdout"]
    assert [tuple(r) for r in got[1:]] == rows
    t = api["groups"]["targeted"]
    assert ("Outcome", "Recipients", str(t["recipients"]),
            str(api["groups"]["holdout"]["recipients"])) in rows


def test_list_pause_resume_and_who_may(client, demo):
    fresh()
    token = signed_in(client, "marketer")
    base = _new_draft(client, token)
    review = _walk(client, token, base, at=(datetime.now(UTC) + timedelta(days=3)).strftime(
        "%Y-%m-%dT%H:%M")).headers["Location"]
    campaign_id = int(re.search(r"/campaigns/(\d+)/review", review).group(1))
    for action, status in (("activate", "active"), ("pause", "paused"),
                           ("activate", "active")):
        assert client.post(f"/console/campaigns/{campaign_id}/{action}",
                           data={"csrf_token": token}).status_code == 302
        fresh()
        assert db.session.get(Campaign, campaign_id).status == status
    listing = client.get("/console/campaigns").get_data(as_text=True)
    assert "Pause<span class=\"visually-hidden\"> Winter" in listing
    audit = db.session.scalars(select(AuditLog).where(
        AuditLog.object_type == "campaign", AuditLog.object_id == str(campaign_id))
        .order_by(AuditLog.id)).all()
    assert [a.action for a in audit] == ["create", "activate", "pause", "activate"]
    assert {a.actor.split(":", 2)[2] for a in audit} == {"marketer@demo.example.com"}
    viewer = client.application.test_client()
    vtoken = signed_in(viewer, "viewer")
    assert viewer.get("/console/campaigns").status_code == 200
    assert "New campaign" not in viewer.get("/console/campaigns").get_data(as_text=True)
    assert viewer.get(f"/console/campaigns/{campaign_id}/review").status_code == 200
    for path in ("/console/campaigns/new", f"/console/campaigns/{campaign_id}/pause",
                 f"/console/campaigns/{campaign_id}/edit"):
        assert viewer.post(path, data={"csrf_token": vtoken}).status_code == 403, path
    # another user's draft is not found
    assert viewer.get(f"{base}/segment").status_code == 403
    admin = client.application.test_client()
    signed_in(admin, "admin")
    assert admin.get(f"{base}/segment").status_code == 404


@pytest.mark.parametrize("fields, error", [
    ({"holdout_percent": "95"}, "holdout_percent"),
    ({"quiet_start": "25:00", "quiet_end": "08:00"}, "quiet_start"),
    ({"quiet_start": "21:00"}, "quiet_end"),
    ({"cap_count": "2"}, "cap_days"),
])
def test_bad_limits_are_shown_at_their_field_and_nothing_is_saved(client, demo, fields,
                                                                  error):
    token = signed_in(client, "marketer")
    base = _new_draft(client, token)
    answer = _walk(client, token, base, **fields)
    assert answer.status_code == 422
    assert f'id="{error}-error"' in answer.get_data(as_text=True)
    fresh()
    assert db.session.scalar(select(func.count()).select_from(Campaign)) == 1


@pytest.mark.parametrize("kind, value, said", [
    ("percent", "12.5", "12.5% off"), ("amount", "5", "$5.00 off"),
    ("points_multiplier", "2", "points times 2"), ("bonus_points", "100", "100 bonus points"),
    ("free_item", "0", "a free item")])
def test_offer_terms(kind, value, said):
    from decimal import Decimal
    from types import SimpleNamespace

    from console.web import offer_terms

    assert offer_terms(SimpleNamespace(kind=kind, value=Decimal(value), currency="USD")) == said
