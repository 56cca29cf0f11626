"""The campaign screens in Chromium: the wizard walked back and forth without losing the
template, its review's counts against what the run then queues (and the fake Twilio
then gets), the report's figures against the API's, axe-core on every step, and a walk
by keyboard only."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from flask import current_app
from playwright.sync_api import expect
from sqlalchemy import func, select

from campaigns import planner
from campaigns.models import Campaign, CampaignRecipient, Message
from console import campaign_drafts
from crm.db import db
from tests.campaigns import conftest as messaging
from tests.campaigns.conftest import drain
from tests.console.conftest import fresh

TEMPLATE = "Hi {name}, you have {points} points. See you soon!"

twilio = messaging.twilio  # the fake Twilio of the messaging tests


def _local_now(minutes: int = -1) -> str:
    zone = ZoneInfo(current_app.config["DEFAULT_TIMEZONE"])
    return (datetime.now(UTC) + timedelta(minutes=minutes)).astimezone(zone).strftime(
        "%Y-%m-%dT%H:%M")


def _figure(page, name: str) -> int:
    return int(page.locator(f"#review-{name}").inner_text().replace(",", ""))


def test_the_wizard_back_and_forth_review_run_and_report(demo, screen, twilio, factory):
    s = screen("marketer")
    page = s.page
    s.go("/console/campaigns")
    s.check("campaigns-list")
    page.get_by_role("button", name="New campaign").click()
    page.get_by_label("Campaign name (required)").fill("Winter comeback")
    page.get_by_label("Segment (required)").select_option(label="Agreed to SMS (demo)")
    s.check("campaign-step-1-segment")
    page.get_by_role("button", name="Next: Message").click()

    template = page.get_by_label("Message template (required)")
    template.fill("Hi {name}, you have ")
    page.get_by_role("button", name="{points}").click()  # inserted at the cursor
    template.press("End")
    template.type(" points. See you soon!")
    expect(template).to_have_value(TEMPLATE)
    expect(page.locator("#preview-body")).to_contain_text("points. See you soon!")
    expect(page.locator("#preview-encoding")).to_have_text("GSM-7")
    body = page.locator("#preview-body").inner_text()
    assert "{" not in body and body.startswith("Hi ")
    s.check("campaign-step-2-message")
    page.get_by_role("button", name="Next: Offer").click()
    s.check("campaign-step-3-offer")
    page.get_by_role("button", name="Back: Message").click()
    expect(page.get_by_label("Message template (required)")).to_have_value(TEMPLATE)
    page.get_by_role("button", name="Next: Offer").click()
    page.get_by_role("button", name="Next: Schedule").click()

    page.get_by_label("Once, at a date and time").check()
    page.get_by_label(re.compile(r"^Send at")).fill(_local_now())
    s.check("campaign-step-4-schedule")
    page.get_by_role("button", name="Next: Holdout and limits").click()
    page.get_by_label("Holdout (% of the audience sent nothing)").fill("25")
    s.check("campaign-step-5-delivery")
    # all the way back, without saving: nothing typed is lost
    page.get_by_role("button", name="Back: Schedule").click()
    page.get_by_role("button", name="Back: Offer").click()
    page.get_by_role("button", name="Back: Message").click()
    expect(page.get_by_label("Message template (required)")).to_have_value(TEMPLATE)
    page.get_by_role("button", name="Back: Audience").click()
    expect(page.get_by_label("Campaign name (required)")).to_have_value("Winter comeback")
    page.get_by_role("button", name="Holdout and limits").click()
    expect(page.get_by_label("Holdout (% of the audience sent nothing)")).to_have_value("25")
    page.get_by_role("button", name="Save and review").click()

    page.wait_for_url(re.compile(r"/campaigns/\d+/review"))
    s.check("campaign-step-6-review")
    campaign_id = int(re.search(r"/campaigns/(\d+)/review", page.url).group(1))
    shown = {n: _figure(page, n) for n in ("audience", "holdout", "targeted", "no_consent",
                                           "no_phone", "capped", "queued", "quiet",
                                           "messages")}
    assert shown["audience"] > 0 and shown["holdout"] > 0 and shown["queued"] > 0
    sample = page.locator(".sms-preview").inner_text()
    page.get_by_label("Your phone number").fill("(415) 555-2671")
    page.get_by_role("button", name="Send a test to me").click()
    expect(page.get_by_text("A test was queued to +14155552671").first).to_be_visible()
    s.check("campaign-review-test-sent")
    page.get_by_role("button", name="Activate campaign").click()
    page.wait_for_url(re.compile(r"/console/campaigns$"))
    expect(page.locator(f"#campaign-{campaign_id}")).to_contain_text("active")

    fresh()
    assert planner.run_due()["runs"] == 1
    db.session.commit()
    drain()
    fresh()
    statuses = dict(db.session.execute(
        select(CampaignRecipient.status, func.count())
        .where(CampaignRecipient.campaign_id == campaign_id)
        .group_by(CampaignRecipient.status)).all())
    for reason in ("holdout", "no_consent", "no_phone", "capped", "queued", "quiet"):
        assert shown[reason] == statuses.get(reason, 0), reason
    queued = [m.to_number for m in db.session.scalars(select(Message).where(
        Message.campaign_id == campaign_id, Message.purpose != "test"))]
    tests = twilio.sent_to("+14155552671")
    assert [m["body"] for m in tests] == [sample]  # the review's message, as a test
    sent = [m for m in twilio.messages if m not in tests]
    assert len(queued) == shown["messages"] == len(sent)
    assert sorted(m["to"] for m in sent) == sorted(queued)
    assert db.session.get(Campaign, campaign_id).template == TEMPLATE

    api = page.request.get(f"{s.base}/api/v1/campaigns/{campaign_id}/report",
                           headers=factory.headers("marketing")).json()
    s.go(f"/console/campaigns/{campaign_id}/report")
    for key in ("queued", "sent", "delivered", "failed", "opted_out"):
        assert page.locator(f"#funnel-{key}").inner_text() == f"{api[key]:,}", key
    assert api["sent"] == shown["messages"]
    targeted = page.locator("#group-targeted td").all_inner_texts()
    assert targeted[0] == f"{api['groups']['targeted']['recipients']:,}"
    assert targeted[4] == api["groups"]["targeted"]["revenue"]
    s.check("campaign-report-new")


def test_the_demo_report_shows_the_apis_figures_with_error_bars(demo, screen, factory):
    fresh()
    campaign_id = db.session.scalar(select(Campaign.id).where(
        Campaign.name == "Welcome back (demo)"))
    s = screen("viewer")
    api = s.page.request.get(f"{s.base}/api/v1/campaigns/{campaign_id}/report",
                             headers=factory.headers("marketing")).json()
    s.go("/console/campaigns")
    assert s.page.get_by_role("button", name="New campaign").count() == 0
    s.page.get_by_role("link", name="Report of Welcome back (demo)").click()
    page = s.page
    page.wait_for_url(re.compile(rf"/campaigns/{campaign_id}/report$"))
    t, h = api["groups"]["targeted"], api["groups"]["holdout"]
    for row, g in (("targeted", t), ("holdout", h)):
        cells = page.locator(f"#group-{row} td").all_inner_texts()
        assert cells[0] == f"{g['recipients']:,}" and cells[1] == f"{g['converters']:,}"
        assert cells[2] == f"{g['conversion_rate'] * 100:.1f}%"
        assert cells[3] == (f"{g['conversion_ci_low'] * 100:.1f}% to "
                            f"{g['conversion_ci_high'] * 100:.1f}%")
        assert cells[4] == g["revenue"] and cells[5] == g["revenue_per_recipient"]
    assert page.locator("#fig-coupons").inner_text() == f"{api['coupons_redeemed']:,}"
    words = page.locator("#significance").inner_text()
    assert ("significant" in words.lower()) and "95%" in words
    # the error bars: both charts drawn, their whiskers at the API's interval
    assert page.locator("canvas[data-bars][data-drawn]").count() == 3
    spec = page.locator("canvas[data-bars]").nth(1).get_attribute("data-bars")
    assert f"{round(t['conversion_ci_high'] * 100, 2)}" in spec
    s.check("campaign-report-demo")


def test_an_error_keeps_the_template_and_is_announced_at_its_field(demo, screen):
    s = screen("marketer")
    page = s.page
    s.go("/console/campaigns")
    page.get_by_role("button", name="New campaign").click()
    page.get_by_label("Campaign name (required)").fill("Broken")
    page.get_by_label("Segment (required)").select_option(label="Agreed to SMS (demo)")
    page.get_by_role("button", name="Next: Message").click()
    page.get_by_label("Message template (required)").fill("Hi {nickname}, 20% off today")
    page.get_by_role("button", name="Next: Offer").click()
    field = page.get_by_label("Message template (required)")
    expect(field).to_have_value("Hi {nickname}, 20% off today")
    assert field.get_attribute("aria-invalid") == "true"
    expect(page.locator("#template-error")).to_contain_text("Unknown field {nickname}")
    s.check("campaign-step-2-error", 422)


def test_keyboard_only_through_the_first_steps(demo, screen):
    s = screen("marketer")
    page, keys = s.page, s.page.keyboard
    s.go("/console/")

    def tab_to(predicate: str, limit: int = 60) -> None:
        for _ in range(limit):
            keys.press("Tab")
            if page.evaluate(predicate):
                return
        raise AssertionError(f"never reached: {predicate}")

    tab_to("document.activeElement.textContent.trim() === 'Campaigns'")
    keys.press("Enter")
    page.wait_for_url(re.compile(r"/console/campaigns$"))
    tab_to("document.activeElement.textContent.trim() === 'New campaign'")
    keys.press("Enter")
    page.wait_for_url(re.compile(r"/segment$"))
    tab_to("document.activeElement.id === 'name'")
    keys.type("By keyboard")
    keys.press("Tab")
    assert page.evaluate("document.activeElement.id") == "segment_id"
    keys.press("ArrowDown")  # the first segment
    tab_to("document.activeElement.textContent.trim() === 'Next: Message'")
    keys.press("Enter")
    page.wait_for_url(re.compile(r"/message$"))
    tab_to("document.activeElement.id === 'template'")
    keys.type("Hello ")
    tab_to("document.activeElement.dataset.insert === '{first_name}'")
    keys.press("Enter")  # inserts, and gives the focus back to the template
    assert page.evaluate("document.activeElement.id") == "template"
    expect(page.get_by_label("Message template (required)")).to_have_value(
        "Hello {first_name}")
    expect(page.locator("#preview-body")).to_contain_text("Hello ")
    tab_to("document.activeElement.textContent.trim() === 'Next: Offer'")
    keys.press("Enter")
    page.wait_for_url(re.compile(r"/offer$"))
    s.check("campaign-keyboard-offer")
    fresh()
    draft = db.session.scalar(select(campaign_drafts.CampaignDraft))
    assert draft.values["name"] == "By keyboard"
    assert draft.values["template"] == "Hello {first_name}"
    assert draft.values["segment_id"].isdigit()
