"""Surveys and messages in a real browser (see conftest): answers posted by hand on the
public survey page and the NPS trend table that shows them, the results' filters, a
survey made and edited through its form, the outbox's filters and a message's delivery
history, and a walk by keyboard only. axe-core on every screen."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from playwright.sync_api import expect
from sqlalchemy import func, select, update

from campaigns import outbox, surveys
from campaigns.models import Message, Survey, SurveyInvitation, SurveyResponse
from crm.db import db
from crm.models import Customer, Store
from tests.console.conftest import fresh

# (store, score, comment): answered this week, or (moved) two weeks before.
THIS_WEEK = [("NYC01", 9, None), ("NYC01", 8, "Fine"), ("SFO01", 10, "Lovely shop"),
             ("SFO01", 2, "Rude at the till")]
TWO_WEEKS_AGO = [("NYC01", 10, "Great staff"), ("NYC01", 6, "Slow checkout")]


def _demo_survey() -> Survey:
    fresh()
    return db.session.scalar(select(Survey).where(Survey.kind == "nps").order_by(Survey.id))


def _invite(client, factory, stores: list[str]) -> list[tuple[str, int]]:
    """A purchase per store named, by SMS members never surveyed yet; the invitations
    sent; their survey page paths and ids, in the same order."""
    fresh()
    invited = select(SurveyInvitation.customer_id)
    people = [c for c in db.session.scalars(select(Customer).where(
        Customer.consent_sms.is_(True), Customer.id.not_in(invited)).order_by(Customer.id))
        if c.phone][:len(stores)]
    assert len(people) == len(stores)
    keys = {code: factory.headers("pos", store=code) for code in set(stores)}
    receipts = []
    for n, (code, person) in enumerate(zip(stores, people, strict=True)):
        r = client.post("/api/v1/purchases", headers=keys[code], json={
            "receipt_id": f"SURV-{n}", "occurred_at": datetime.now(UTC).isoformat(),
            "currency": "USD", "total": "20.00", "customer": {"id": person.id},
            "lines": [{"sku": "SKU-1", "quantity": 1, "unit_price": "20.00"}]})
        assert r.status_code == 201, r.get_json()
        receipts.append(r.get_json()["id"])
    fresh()
    surveys.dispatch(datetime.now(UTC) + timedelta(minutes=1))
    db.session.commit()
    by_purchase = {inv.purchase_id: inv for inv in db.session.scalars(
        select(SurveyInvitation).where(SurveyInvitation.purchase_id.in_(receipts)))}
    assert all(by_purchase[p].status == "invited" for p in receipts)
    return [(f"/s/{surveys.token_for(by_purchase[p].id)}", by_purchase[p].id)
            for p in receipts]


def _iso_week(days_ago: int) -> str:
    year, week, _ = (datetime.now(UTC) - timedelta(days=days_ago)).date().isocalendar()
    return f"{year}-W{week:02d}"


def _rows(page, table: str) -> list[list[str]]:
    return [[c.strip() for c in row.locator("td").all_inner_texts()]
            for row in page.locator(f"#{table} tbody tr").all()]


def test_the_nps_trend_table_matches_answers_posted_by_hand(demo, screen, client, factory):
    survey = _demo_survey()
    answers = THIS_WEEK + TWO_WEEKS_AGO
    paths = _invite(client, factory, [store for store, _, _ in answers])
    customer = screen()  # a member on a phone, not signed in
    for (path, _), (_, score, comment) in zip(paths, answers, strict=True):
        customer.go(path)
        customer.page.get_by_label(str(score), exact=True).check()
        if comment:
            customer.page.get_by_label("Anything you would like to tell us?").fill(comment)
        customer.page.get_by_role("button", name="Send").click()
        expect(customer.page.get_by_role("heading", name="Thank you!")).to_be_visible()
    customer.errors.clear()  # the public page has no favicon: Chromium's /favicon.ico 404
    customer.check("survey-answered")
    fresh()
    invitation_ids = [i for (_, i), a in zip(paths, answers, strict=True)
                      if a in TWO_WEEKS_AGO]
    db.session.execute(update(SurveyResponse).where(
        SurveyResponse.invitation_id.in_(invitation_ids))
        .values(created_at=datetime.now(UTC) - timedelta(days=14)))
    db.session.commit()

    s = screen("marketer")
    s.go("/console/surveys")
    s.check("surveys")
    s.page.get_by_role("link", name=survey.name, exact=True).click()
    s.page.wait_for_url(re.compile(rf"/console/surveys/{survey.id}/results$"))
    # By hand: this week 9, 8, 10, 2 -> 2 promoters, 1 passive, 1 detractor: NPS 25;
    # two weeks ago 10, 6 -> 1 and 1: NPS 0; the week between has no answer.
    assert _rows(s.page, "trend-table") == [
        [_iso_week(0), (datetime.now(UTC).date() - timedelta(
            days=datetime.now(UTC).weekday())).isoformat(), "4", "2", "1", "1", "25"],
        [_iso_week(7), (datetime.now(UTC).date() - timedelta(
            days=datetime.now(UTC).weekday() + 7)).isoformat(), "0", "0", "0", "0", "—"],
        [_iso_week(14), (datetime.now(UTC).date() - timedelta(
            days=datetime.now(UTC).weekday() + 14)).isoformat(), "2", "1", "0", "1", "0"]]
    # 3 promoters, 1 passive, 2 detractors of 6: (3 - 2) / 6 = 17; 6 of 6 invited.
    figures = {k: s.page.locator(f"#fig-{k}").inner_text() for k in
               ("score", "responses", "promoters", "passives", "detractors", "rate")}
    assert figures == {"score": "17", "responses": "6", "promoters": "3", "passives": "1",
                       "detractors": "2", "rate": "100%"}
    expect(s.page.locator("canvas[data-chart]")).to_have_attribute("data-drawn", "1")
    assert [r[3] for r in _rows(s.page, "comments-table")] == [
        "Rude at the till", "Lovely shop", "Fine", "Slow checkout", "Great staff"]
    s.check("survey-results")

    s.page.get_by_label("Store", exact=True).select_option("NYC01")
    s.page.get_by_role("button", name="Apply filters").click()
    s.page.wait_for_url(re.compile(r"store=NYC01"))
    # NYC01: this week 9, 8 -> NPS 50; two weeks ago 10, 6 -> 0.
    assert [(r[0], r[2], r[6]) for r in _rows(s.page, "trend-table")] == [
        (_iso_week(0), "2", "50"), (_iso_week(7), "0", "—"), (_iso_week(14), "2", "0")]
    assert s.page.locator("#fig-score").inner_text() == "25"  # (2 - 1) / 4
    s.check("survey-results-store")

    s.page.get_by_label("Store", exact=True).select_option("")
    s.page.get_by_label("Comments with score").select_option("detractors")
    s.page.get_by_role("button", name="Apply filters").click()
    s.page.wait_for_url(re.compile(r"score=detractors"))
    assert [(r[1], r[2], r[3]) for r in _rows(s.page, "comments-table")] == [
        ("SFO01", "2", "Rude at the till"), ("NYC01", "6", "Slow checkout")]
    assert s.page.locator("#fig-responses").inner_text() == "6"  # the figures are all
    week_ago = (datetime.now(UTC) - timedelta(days=7)).date().isoformat()
    s.page.get_by_label("From", exact=True).fill(week_ago)
    s.page.get_by_role("button", name="Apply filters").click()
    s.page.wait_for_url(re.compile(r"from="))
    assert [r[3] for r in _rows(s.page, "comments-table")] == ["Rude at the till"]
    assert [(r[0], r[6]) for r in _rows(s.page, "trend-table")] == [(_iso_week(0), "25")]
    s.check("survey-results-filtered")
    s.page.get_by_label("To", exact=True).fill("2020-01-01")
    s.page.get_by_role("button", name="Apply filters").click()
    expect(s.page.locator("#filter-to-error")).to_have_text("The end is before the start.")
    s.check("survey-results-bad-filter", status=422)


def test_a_survey_made_and_edited_in_its_form_keeps_input_after_an_error(demo, screen):
    s = screen("marketer")
    s.go("/console/surveys")
    s.page.get_by_label("Name (required)").fill("Checkout satisfaction")
    s.page.get_by_label("Kind (nps: 0-10, csat: 1-5) (required)").select_option("csat")
    s.page.get_by_label("Question (required)").fill("How was checking out today?")
    s.page.get_by_label("Delay (hours after the sale)").fill("-1")
    s.page.get_by_role("button", name="Create survey").click()
    expect(s.page.locator("#new-delay_hours-error")).to_be_visible()
    expect(s.page.get_by_label("Question (required)")).to_have_value(
        "How was checking out today?")
    expect(s.page.get_by_label("Kind (nps: 0-10, csat: 1-5) (required)")).to_have_value("csat")
    s.check("surveys-create-error", status=422)
    s.page.get_by_label("Delay (hours after the sale)").fill("3")
    s.page.get_by_role("button", name="Create survey").click()
    s.page.wait_for_url(re.compile(r"/console/surveys/\d+/results$"))
    expect(s.page.get_by_role("status")).to_contain_text("Checkout satisfaction")
    expect(s.page.locator("#trend-h")).to_contain_text("CSAT by week")
    s.check("survey-results-empty")
    s.page.get_by_role("link", name="Edit settings").click()
    expect(s.page.get_by_label("Question (required)")).to_have_value(
        "How was checking out today?")
    s.check("survey-edit")
    s.page.get_by_label("Throttle (days)").fill("30")
    s.page.get_by_role("button", name="Save survey").click()
    s.page.wait_for_url(re.compile(r"/results$"))
    fresh()
    made = db.session.scalar(select(Survey).where(Survey.name == "Checkout satisfaction"))
    assert (made.kind, made.delay_hours, made.throttle_days) == ("csat", 3, 30)
    viewer = screen("viewer")
    viewer.go(f"/console/surveys/{made.id}")
    expect(viewer.page.get_by_role("button", name="Save survey")).to_have_count(0)
    assert "30" in viewer.page.locator("#survey-settings").inner_text()
    viewer.check("survey-settings-viewer")
    viewer.go("/console/surveys")
    expect(viewer.page.get_by_role("button", name="Create survey")).to_have_count(0)


def test_the_outbox_filters_and_a_messages_delivery_history(demo, screen):
    fresh()
    person = db.session.scalar(select(Customer).where(Customer.consent_sms.is_(True))
                               .order_by(Customer.id))
    message = outbox.queue(person, "Your order is ready", "transactional")
    db.session.flush()
    for status in ("sent", "delivered", "sent"):  # the last one late: ignored
        outbox.apply_status(message.id, "SM" + "0" * 30 + "42", status)
    db.session.commit()
    campaign_messages = db.session.scalar(select(func.count()).select_from(Message).where(
        Message.purpose == "campaign"))
    assert campaign_messages > 0
    campaign_id = db.session.scalar(select(Message.campaign_id).where(
        Message.purpose == "campaign").limit(1))

    s = screen("marketer")
    s.go("/console/messages")
    first = _rows(s.page, "messages-table")[0]
    assert first[0] == f"Message {message.id}" and first[3] == f"***{person.phone[-4:]}"
    assert person.phone not in s.page.locator("#messages-table").inner_text()
    s.check("messages")
    total = db.session.scalar(select(func.count()).select_from(Message))
    if total > 25:
        s.page.get_by_role("link", name="Next page").click()
        expect(s.page.get_by_text(f"Page 2 of {-(-total // 25)}")).to_be_visible()
        assert len(_rows(s.page, "messages-table")) == min(total - 25, 25)
        s.page.get_by_role("link", name="Previous page").click()
    s.page.get_by_label("Campaign", exact=True).select_option(
        label=f"Welcome back (demo) ({campaign_id})")
    s.page.get_by_role("button", name="Apply filters").click()
    s.page.wait_for_url(re.compile(r"campaign_id=\d+"))
    expect(s.page.locator("#messages-count")).to_have_text(f"{campaign_messages} messages.")
    assert {r[5] for r in _rows(s.page, "messages-table")} == {"Welcome back (demo)"}
    s.page.get_by_label("Campaign", exact=True).select_option("")
    s.page.get_by_label("Purpose", exact=True).select_option("campaign")
    s.page.get_by_role("button", name="Apply filters").click()
    s.page.wait_for_url(re.compile(r"purpose=campaign"))
    expect(s.page.locator("#messages-count")).to_have_text(f"{campaign_messages} messages.")
    assert {r[4] for r in _rows(s.page, "messages-table")} == {"campaign"}
    s.page.get_by_label("Purpose", exact=True).select_option("")
    s.page.get_by_label("Customer id", exact=True).fill(str(person.id))
    s.page.get_by_label("Status", exact=True).select_option("delivered")
    s.page.get_by_role("button", name="Apply filters").click()
    s.page.wait_for_url(re.compile(r"customer_id="))
    rows = _rows(s.page, "messages-table")
    assert rows and {r[2] for r in rows} == {f"Customer {person.id}"}
    assert {r[6] for r in rows} == {"delivered"}
    s.check("messages-filtered")
    s.page.get_by_label("Customer id", exact=True).fill("someone")
    s.page.get_by_role("button", name="Apply filters").click()
    expect(s.page.locator("#filter-customer_id-error")).to_be_visible()
    s.check("messages-bad-filter", status=422)

    s.go(f"/console/messages/{message.id}")
    expect(s.page.locator("#message-status")).to_have_text("delivered")
    assert _rows(s.page, "history-table") and [
        (r[1], r[2], r[4]) for r in _rows(s.page, "history-table")] == [
        ("sent", "sent", "moved the message on"),
        ("delivered", "delivered", "moved the message on"),
        ("sent", "sent", "ignored: the message was already further along")]
    assert s.page.locator("#message-to").inner_text() == f"***{person.phone[-4:]}"
    s.check("message-history")
    admin = screen("admin")
    admin.go(f"/console/messages/{message.id}")
    assert admin.page.locator("#message-to").inner_text() == person.phone
    admin.check("message-history-admin")


def _tab_to(page, role: str, name: str, limit: int = 60) -> None:
    """Press Tab until the element of this role and accessible name has the focus."""
    target = page.get_by_role(role, name=name, exact=True)
    for _ in range(limit):
        page.keyboard.press("Tab")
        if target.evaluate("el => el === document.activeElement"):
            return
    raise AssertionError(f"Tab never reached the {role} {name!r}")


def test_a_keyboard_only_walk_from_the_surveys_to_a_filtered_result_and_the_outbox(
        demo, screen):
    survey = _demo_survey()
    fresh()
    sfo = db.session.scalar(select(Store).where(Store.code == "SFO01"))
    s = screen("viewer")
    s.go("/console/surveys")
    s.page.keyboard.press("Tab")
    assert s.page.evaluate("document.activeElement.textContent") == "Skip to content"
    _tab_to(s.page, "link", f"Results of {survey.name}")
    s.page.keyboard.press("Enter")
    s.page.wait_for_url(re.compile(rf"/console/surveys/{survey.id}/results$"))
    _tab_to(s.page, "combobox", "Store")
    s.page.keyboard.type("SFO")  # type-ahead picks the option
    expect(s.page.get_by_label("Store", exact=True)).to_have_value(sfo.code)
    _tab_to(s.page, "button", "Apply filters")
    s.page.keyboard.press("Enter")
    s.page.wait_for_url(re.compile(r"store=SFO01"))
    expect(s.page.locator("#trend-h")).to_contain_text("store SFO01")
    s.check("survey-results-keyboard")
    _tab_to(s.page, "link", "Messages")
    s.page.keyboard.press("Enter")
    s.page.wait_for_url(re.compile(r"/console/messages$"))
    _tab_to(s.page, "combobox", "Status")
    s.page.keyboard.type("deliv")
    _tab_to(s.page, "button", "Apply filters")
    s.page.keyboard.press("Enter")
    s.page.wait_for_url(re.compile(r"status=delivered"))
    first = s.page.locator("#messages-table tbody a").first
    first_name = first.inner_text()
    _tab_to(s.page, "link", first_name)
    s.page.keyboard.press("Enter")
    s.page.wait_for_url(re.compile(r"/console/messages/\d+$"))
    expect(s.page.get_by_role("heading", name="Delivery history")).to_be_visible()
    s.check("message-keyboard")
