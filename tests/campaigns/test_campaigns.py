"""Campaigns: audience from a segment, holdout, caps, quiet hours, consent, personal
coupons and fields, schedules and triggers, re-entry, and the report with its lift."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from scipy.stats import binomtest
from sqlalchemy import func, select, update

from campaigns import planner, segments
from campaigns.campaign_settings import is_due
from campaigns.models import Campaign, CampaignRecipient, CampaignRecommendation, Message
from crm.db import db
from loyalty.models import Purchase
from tests.campaigns.conftest import PUBLIC, drain
from tests.helpers import ago

EVERYONE = {"field": "consent_sms", "op": "eq", "value": True}
ALL_LIVE = {"field": "created_at", "op": "gte", "value": "2000-01-01"}


@pytest.fixture
def marketing(factory):
    return factory.headers("marketing")


@pytest.fixture
def campaign(client, marketing, program):
    def make(rule=ALL_LIVE, **body):
        r = client.post("/api/v1/segments", headers=marketing, json={"name": "s", "rule": rule})
        assert r.status_code == 201, r.get_json()
        body = {"name": "Come back", "segment_id": r.get_json()["id"],
                "template": "Hi {name}!", "holdout_percent": 0,
                "schedule": {"at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat()},
                **body}
        r = client.post("/api/v1/campaigns", headers=marketing, json=body)
        assert r.status_code == 201, r.get_json()
        created = r.get_json()
        r = client.post(f"/api/v1/campaigns/{created['id']}/activate", headers=marketing)
        assert r.status_code == 200 and r.get_json()["status"] == "active"
        return created
    return make


def run(now=None):
    db.session.rollback()
    counts = planner.run_due(now)
    db.session.commit()
    return counts


def recipients(campaign_id):
    db.session.rollback()
    return {r.customer_id: r for r in db.session.scalars(
        select(CampaignRecipient).where(CampaignRecipient.campaign_id == campaign_id))}


def bodies(campaign_id):
    return {m.customer_id: m.body for m in db.session.scalars(
        select(Message).where(Message.campaign_id == campaign_id))}


def test_a_campaign_with_personal_coupons_and_fields(client, marketing, campaign, member,
                                                     till):
    offer = client.post("/api/v1/offers", headers=marketing, json={
        "name": "10% back", "kind": "percent", "value": "10", "currency": "EUR"}).get_json()
    ada, bob = member(first_name="Ada"), member(first_name=None)
    till.buy({"id": ada.id}, "120.00")
    created = campaign(template="Hi {name}, you have {points} points. Code {coupon_code}",
                       offer_id=offer["id"])
    counts = run()
    assert counts == {"queued": 2, "holdout": 0, "audience": 2, "runs": 1}
    got = bodies(created["id"])
    assert got[ada.id].startswith("Hi Ada, you have 120 points. Code ")
    assert got[bob.id].startswith("Hi there, you have 0 points. Code ")
    code = got[ada.id].rsplit(" ", 1)[1]
    r = client.get(f"/api/v1/customers/{ada.id}/coupons", headers=till.headers)
    assert code in [c["code"] for c in r.get_json()["items"]]
    assert run() == {}  # a one-off campaign runs once
    r = client.get(f"/api/v1/campaigns/{created['id']}", headers=marketing)
    assert r.get_json()["status"] == "completed"


def test_holdout_is_stable_recorded_and_sent_nothing(campaign, member):
    people = [member() for _ in range(40)]
    created = campaign(holdout_percent=50)
    counts = run()
    held = {i for i, r in recipients(created["id"]).items() if r.holdout}
    assert counts["holdout"] == len(held) and 8 < len(held) < 32
    assert held == {p.id for p in people if planner.holdout(created["id"], p.id, 50)}
    assert set(bodies(created["id"])) == {p.id for p in people} - held
    assert {r.status for i, r in recipients(created["id"]).items() if i in held} == {"holdout"}
    share = sum(planner.holdout(7, n, 10) for n in range(20_000)) / 20_000
    assert 0.09 < share < 0.11


def test_caps_quiet_hours_and_consent_are_recorded_with_reasons(campaign, member, factory):
    capped, quiet_one, fine = member(), member(), member()
    member(consent=False)
    factory.customer(email="nophone@example.com", consent={"sms": True})
    for _ in range(2):
        db.session.add(Message(customer_id=capped.id, to_number=capped.phone, body="x",
                               purpose="campaign", status="delivered"))
    db.session.commit()
    tokyo = factory.store("TYO", timezone="Asia/Tokyo", currency="EUR")
    local = datetime.now(ZoneInfo("Asia/Tokyo"))
    window = {"start": (local - timedelta(hours=1)).strftime("%H:%M"),
              "end": (local + timedelta(hours=1)).strftime("%H:%M")}
    db.session.rollback()
    db.session.add(Purchase(store_id=tokyo.id, receipt_id="T1", request_hash="x",
                            customer_id=quiet_one.id, occurred_at=ago(days=1),
                            currency="EUR", total=100, paid=100))
    db.session.commit()
    created = campaign(rule=ALL_LIVE, frequency_cap={"count": 2, "days": 7},
                       quiet_hours=window)
    counts = run()
    assert counts == {"capped": 1, "quiet": 1, "queued": 1, "no_consent": 1, "no_phone": 1,
                      "holdout": 0, "audience": 5, "runs": 1}
    got = recipients(created["id"])
    assert (got[capped.id].status, got[capped.id].message_id) == ("capped", None)
    assert got[fine.id].status == "queued"
    waiting = db.session.get(Message, got[quiet_one.id].message_id)
    ends = (local + timedelta(hours=1)).strftime("%H:%M")
    assert waiting.next_attempt_at.astimezone(ZoneInfo("Asia/Tokyo")).strftime("%H:%M") == ends
    report = factory.app.test_client().get(f"/api/v1/campaigns/{created['id']}/report",
                                           headers=factory.headers("marketing")).get_json()
    assert report["not_sent"] == {"capped": 1, "no_consent": 1, "no_phone": 1}
    assert (report["waiting_for_quiet_hours_end"], report["queued"]) == (1, 2)


def test_a_triggered_campaign_reaches_a_person_once_per_reentry_window(campaign, member, till):
    lapsed, active = member(), member()
    till.buy({"id": lapsed.id}, "10.00", occurred_at=ago(days=40))
    till.buy({"id": active.id}, "10.00", occurred_at=ago(days=2))
    created = campaign(schedule={"trigger": "no_purchase", "days": 30}, reentry_days=60)
    assert run()["queued"] == 1
    assert run() == {"audience": 0, "holdout": 0, "runs": 1}  # runs again (or retried)
    assert set(recipients(created["id"])) == {lapsed.id}
    db.session.execute(update(CampaignRecipient).values(created_at=ago(days=61)))
    db.session.commit()
    assert run()["queued"] == 1  # the window has passed
    assert db.session.scalar(select(func.count()).select_from(Message).where(
        Message.campaign_id == created["id"], Message.customer_id == lapsed.id)) == 2


def test_concurrent_runs_of_one_campaign_do_not_double(app, campaign, member, till):
    for _ in range(20):
        till.buy({"id": member().id}, "10.00", occurred_at=ago(days=3))
    created = campaign(schedule={"trigger": "no_purchase", "days": 1})
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def worker():
        with app.app_context():
            barrier.wait()
            try:
                planner.run_due()
                db.session.commit()
            except BaseException as e:
                errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    db.session.rollback()
    assert len(recipients(created["id"])) == 20
    per_person = db.session.execute(select(CampaignRecipient.customer_id, func.count())
                                    .where(CampaignRecipient.campaign_id == created["id"])
                                    .group_by(CampaignRecipient.customer_id)).all()
    assert all(n == 1 for _, n in per_person)


def test_triggers(campaign, member, till, factory, client, marketing):
    today = datetime.now(UTC).date()
    birthday = member(birthday=date(1990, today.month, today.day))
    member(birthday=date(1990, 1, 1) if today.month != 1 else date(1990, 6, 1))
    created = campaign(schedule={"trigger": "birthday"}, template="Happy birthday {name}!")
    run()
    assert set(recipients(created["id"])) == {birthday.id}

    firsts = campaign(schedule={"trigger": "first_purchase"})
    newcomer = member()
    till.buy({"id": newcomer.id}, "10.00")
    run()
    assert set(recipients(firsts["id"])) == {newcomer.id}

    expiring = campaign(schedule={"trigger": "points_expiring", "days": 400})
    run()
    assert set(recipients(expiring["id"])) == {newcomer.id}


def test_tier_changes_trigger_a_campaign(campaign, member, till, client, admin):
    r = client.post("/api/v1/loyalty/tiers", headers=admin, json={
        "name": "Gold", "threshold_points": 100, "multiplier": "1.5"})
    assert r.status_code == 201, r.get_json()
    created = campaign(schedule={"trigger": "tier_changed"}, template="Welcome to {tier}!")
    climber = member()
    member()
    till.buy({"id": climber.id}, "150.00")
    run()
    assert list(bodies(created["id"]).values()) == ["Welcome to Gold!"]


def test_cron_schedules():
    start = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
    c = Campaign(schedule={"cron": "0 10 * * *"}, activated_at=start, last_run_at=None)
    assert not is_due(c, start + timedelta(minutes=20))
    assert is_due(c, start + timedelta(minutes=31))
    c.last_run_at = start + timedelta(minutes=31)
    assert not is_due(c, start + timedelta(hours=5))
    assert is_due(c, start + timedelta(days=1, minutes=31))


def test_paused_campaigns_do_not_run(campaign, member, client, marketing):
    member()
    created = campaign(schedule={"cron": "* * * * *"})
    r = client.post(f"/api/v1/campaigns/{created['id']}/pause", headers=marketing)
    assert r.get_json()["status"] == "paused"
    assert run(datetime.now(UTC) + timedelta(minutes=2)) == {}


@pytest.mark.parametrize(("body", "field"), [
    ({"template": "Hi {nmae}"}, "template"),
    ({"template": "Hi {name.upper}"}, "template"),
    ({"template": "Code {coupon_code}"}, "template"),
    ({"template": "Hi {"}, "template"),
    ({"schedule": {"at": "tomorrow"}}, "schedule"),
    ({"schedule": {"cron": "every day"}}, "schedule.cron"),
    ({"schedule": {"trigger": "no_purchase"}}, "schedule.days"),
    ({"schedule": {"at": "2026-12-01T10:00:00+00:00", "cron": "0 10 * * *"}}, "schedule"),
    ({"holdout_percent": 95}, "holdout_percent"),
    ({"frequency_cap": {"count": 0, "days": 7}}, "frequency_cap"),
    ({"quiet_hours": {"start": "22:00"}}, "quiet_hours"),
    ({"segment_id": 999}, None),
])
def test_bad_campaigns_are_refused(client, marketing, program, body, field):
    segment = client.post("/api/v1/segments", headers=marketing,
                          json={"name": "s", "rule": EVERYONE}).get_json()
    full = {"name": "x", "segment_id": segment["id"], "template": "Hi",
            "schedule": {"at": "2026-12-01T10:00:00+00:00"}, **body}
    r = client.post("/api/v1/campaigns", headers=marketing, json=full)
    assert r.status_code in (404, 422), r.get_json()
    if field:
        assert any(key.startswith(field) for key in r.get_json()["errors"]), r.get_json()
    assert client.get("/api/v1/campaigns", headers=marketing).get_json()["items"] == []


def test_recommendations_come_from_co_purchases(campaign, member, till):
    def bought(person, *categories):
        for category in categories:
            till.buy({"id": person.id}, "5.00", lines=[{"sku": category, "category": category,
                                                      "quantity": 1, "unit_price": "5.00"}])
    for _ in range(3):
        bought(member(), "coffee", "croissant")
    bought(member(), "coffee", "tea")
    target = member()
    bought(target, "coffee")
    db.session.rollback()
    segments.refresh_insights()
    db.session.commit()
    created = campaign(rule={"field": "bought_category", "op": "eq", "value": "coffee"},
                       template="Try our {recommendation}")
    run()
    assert bodies(created["id"])[target.id] == "Try our croissant"


def test_the_report_compares_targeted_and_holdout(client, marketing, campaign, member, till,
                                                  twilio):
    offer = client.post("/api/v1/offers", headers=marketing, json={
        "name": "5 off", "kind": "amount", "value": "5.00", "currency": "EUR"}).get_json()
    people = [member() for _ in range(30)]
    created = campaign(holdout_percent=30, template="{coupon_code}", offer_id=offer["id"],
                       attribution_days=14)
    run()
    got = recipients(created["id"])
    targeted = [p for p in people if not got[p.id].holdout]
    held = [p for p in people if got[p.id].holdout]
    assert targeted and held
    drain()
    # two targeted people buy (one with their coupon), one held-out person buys
    code = bodies(created["id"])[targeted[0].id]
    till.buy({"id": targeted[0].id}, "100.00", coupon_codes=[code])
    till.buy({"id": targeted[1].id}, "50.00")
    till.buy({"id": held[0].id}, "20.00")
    till.buy({"id": held[1].id}, "20.00", occurred_at=ago(days=1))  # before the campaign
    form, signature = twilio.signed_inbound(PUBLIC + "/webhooks/twilio/inbound",
                                            targeted[2].phone, "STOP")
    client.post("/webhooks/twilio/inbound", data=form,
                headers={"X-Twilio-Signature": signature})
    r = client.get(f"/api/v1/campaigns/{created['id']}/report", headers=marketing)
    assert r.status_code == 200, r.get_json()
    report = r.get_json()
    n1, n2 = len(targeted), len(held)
    assert (report["audience"], report["targeted"], report["holdout"]) == (30, n1, n2)
    assert (report["sent"], report["failed"], report["opted_out"],
            report["coupons_redeemed"]) == (n1, 0, 1, 1)
    assert report["groups"]["targeted"]["converters"] == 2
    assert report["groups"]["targeted"]["revenue"] == "145.00"  # 100 - 5 off, + 50
    holdout = report["groups"]["holdout"]
    assert {k: holdout[k] for k in ("recipients", "converters", "conversion_rate", "revenue",
                                    "revenue_per_recipient")} == {
        "recipients": n2, "converters": 1, "conversion_rate": 1 / n2, "revenue": "20.00",
        "revenue_per_recipient": f"{2000 // n2 / 100:.2f}"}
    # The groups' 95% intervals, checked against libraries we did not write: Wilson's
    # interval by scipy, the mean's normal interval by numpy (everyone counts, 0 or not).
    wilson = binomtest(1, n2).proportion_ci(0.95, method="wilson")
    assert holdout["conversion_ci_low"] == pytest.approx(wilson.low, abs=1e-6)
    assert holdout["conversion_ci_high"] == pytest.approx(wilson.high, abs=1e-6)
    spend = np.array([2000] + [0] * (n2 - 1))
    half = 1.959964 * spend.std(ddof=1) / np.sqrt(n2)
    assert holdout["revenue_per_recipient_ci_low"] == f"{round(spend.mean() - half) / 100:.2f}"
    assert holdout["revenue_per_recipient_ci_high"] == f"{round(spend.mean() + half) / 100:.2f}"
    lift = report["lift"]
    assert lift["conversion_difference"] == round(2 / n1 - 1 / n2, 6)
    assert lift["ci_low"] < lift["conversion_difference"] < lift["ci_high"]
    assert lift["significant"] is False and lift["confidence"] == 0.95


def test_the_demo_campaign_has_a_report(runner, client, factory):
    result = runner.invoke(args=["demo"])
    assert result.exit_code == 0, result.output
    db.session.rollback()
    campaign_id = db.session.scalar(select(Campaign.id).where(
        Campaign.name == "Welcome back (demo)"))
    r = client.get(f"/api/v1/campaigns/{campaign_id}/report",
                   headers=factory.headers("marketing"))
    report = r.get_json()
    assert r.status_code == 200 and report["audience"] > 100, report
    assert report["holdout"] > 0 and report["delivered"] == report["targeted"]
    assert report["groups"]["targeted"]["converters"] > 0
    assert runner.invoke(args=["demo"]).exit_code == 0  # again: nothing added twice
    assert db.session.scalar(select(func.count()).select_from(Campaign)) == 1


def test_a_person_picked_on_several_runs_counts_once_in_the_report(client, marketing,
                                                                     campaign, member, till):
    person = member()
    till.buy({"id": person.id}, "10.00", occurred_at=ago(days=30))
    created = campaign(schedule={"trigger": "no_purchase", "days": 7}, reentry_days=1,
                       attribution_days=14)
    run(datetime.now(UTC) - timedelta(days=3))
    run(datetime.now(UTC) - timedelta(days=1))
    till.buy({"id": person.id}, "100.00")
    report = client.get(f"/api/v1/campaigns/{created['id']}/report",
                        headers=marketing).get_json()
    assert (report["entries"], report["audience"]) == (2, 1)
    assert report["groups"]["targeted"] == {
        "recipients": 1, "converters": 1, "conversion_rate": 1.0, "revenue": "100.00",
        "revenue_per_recipient": "100.00", "revenue_per_recipient_ci_low": None,
        "revenue_per_recipient_ci_high": None, "conversion_ci_high": 1.0,
        "conversion_ci_low": pytest.approx(
            binomtest(1, 1).proportion_ci(0.95, method="wilson").low, abs=1e-6)}


def test_people_waiting_for_quiet_hours_leave_the_count_when_sent(client, marketing, campaign,
                                                                  member, twilio):
    member()
    local = datetime.now(ZoneInfo("UTC"))
    window = {"start": (local - timedelta(hours=1)).strftime("%H:%M"),
              "end": (local + timedelta(hours=1)).strftime("%H:%M")}
    created = campaign(quiet_hours=window)
    run()
    url = f"/api/v1/campaigns/{created['id']}/report"
    assert client.get(url, headers=marketing).get_json()["waiting_for_quiet_hours_end"] == 1
    db.session.execute(update(Message).values(next_attempt_at=datetime.now(UTC),
                                              quiet_start=None))  # the hours have passed
    db.session.commit()
    drain()
    report = client.get(url, headers=marketing).get_json()
    assert (report["waiting_for_quiet_hours_end"], report["sent"]) == (0, 1)


def test_a_first_purchase_posted_late_still_triggers(campaign, member, till):
    created = campaign(schedule={"trigger": "first_purchase"})
    run()  # the campaign has looked once
    person = member()
    till.buy({"id": person.id}, "10.00", occurred_at=ago(hours=2))  # an offline till
    run()
    assert set(recipients(created["id"])) == {person.id}


def test_birthdays_follow_the_persons_local_day(campaign, member, factory):
    """At 20:00 UTC on 25 November it is already the 26th in Auckland."""
    auckland = factory.store("AKL", timezone="Pacific/Auckland", currency="EUR")
    now = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)
    kiwi = member(birthday=date(1990, 11, 26))  # shops in Auckland
    not_yet = member(birthday=date(1990, 11, 26))  # no store: DEFAULT_TIMEZONE (UTC)
    today = member(birthday=date(1990, 11, 25))
    db.session.rollback()
    db.session.add(Purchase(store_id=auckland.id, receipt_id="A1", request_hash="x",
                            customer_id=kiwi.id, occurred_at=now - timedelta(days=1),
                            currency="EUR", total=100, paid=100))
    db.session.commit()
    created = campaign(schedule={"trigger": "birthday"})
    run(now)
    assert set(recipients(created["id"])) == {kiwi.id, today.id}
    assert not_yet.id not in recipients(created["id"])
    assert planner._birthday_matches(date(2000, 2, 29), date(2027, 2, 28))
    assert not planner._birthday_matches(date(2000, 2, 29), date(2028, 2, 28))
    assert planner._birthday_matches(date(2000, 2, 29), date(2028, 2, 29))


def test_one_campaign_failing_does_not_stop_the_others(campaign, member, caplog):
    """A rule that cannot run (here a text no database can encode, written behind the
    API's back) fails its own campaign only."""
    from campaigns.models import Segment

    person = member()
    broken = campaign(schedule={"trigger": "no_purchase", "days": 1})
    fine = campaign()
    db.session.rollback()
    db.session.get(Segment, broken["segment_id"]).rule = {
        "field": "city", "op": "eq", "value": "\ud800"}
    db.session.commit()
    counts = run()
    assert counts["failed_runs"] == 1 and counts["runs"] == 1
    assert set(recipients(fine["id"])) == {person.id}
    assert recipients(broken["id"]) == {}
    assert "could not run" in caplog.text


def test_a_cron_campaign_runs_once_per_fire_time(campaign, member):
    person = member()
    created = campaign(schedule={"cron": "0 * * * *"}, reentry_days=30)
    later = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=2)
    assert run(later)["queued"] == 1
    assert run(later) == {}  # the same fire time: not due again
    assert run(later + timedelta(hours=1)) == {"audience": 0, "holdout": 0, "runs": 1}
    assert set(recipients(created["id"])) == {person.id}  # within the re-entry window


def test_recommended_products_in_messages_and_the_report(client, factory, marketing, campaign,
                                                         member, till, runner):
    from tests.loyalty.test_recommendations import CATALOGUE, _sell, _sync

    _sync(client, factory.headers("shop"), CATALOGUE)
    for skus in (["BEANS", "PAPERS", "BREAD"],) * 4 + (["BEANS", "PAPERS"],):
        _sell(till, {"id": member(consent=False).id}, skus, occurred_at=ago(days=40))
    coffee = [member() for _ in range(20)]
    for person in coffee:
        _sell(till, {"id": person.id}, ["BEANS"], occurred_at=ago(days=40))
    newcomer, unknown = member(), member(consent=False)
    _sell(till, {"id": newcomer.id}, ["MILK"], occurred_at=ago(days=40))
    assert runner.invoke(args=["recommendations", "refresh"]).exit_code == 0
    rule = {"field": "bought_category", "op": "eq", "value": "any"}
    created = campaign(rule=rule, template="Next time: {recommended_product}. "
                       "Or {recommended_products}", holdout_percent=50, attribution_days=7)
    run()
    got = recipients(created["id"])
    body = bodies(created["id"])
    sent = [p for p in coffee if not got[p.id].holdout]
    held = [p for p in coffee if got[p.id].holdout]
    assert len(sent) >= 2 and held
    assert body[sent[0].id] == "Next time: Filter papers. Or Filter papers, Sourdough, Milk"
    # no history worth the name: the store's best sellers (kept for the holdout too)
    shown = db.session.scalars(select(CampaignRecommendation.sku).where(
        CampaignRecommendation.customer_id == newcomer.id).order_by(CampaignRecommendation.id))
    assert list(shown) == ["BEANS", "PAPERS", "BREAD"]
    assert unknown.id not in body  # no consent: shown at the till, never sent
    _sell(till, {"id": sent[0].id}, ["PAPERS", "MUG"])
    _sell(till, {"id": sent[1].id}, ["PAPERS"])
    _sell(till, {"id": held[0].id}, ["SOURDOUGH-NOT-RECOMMENDED"])
    report = client.get(f"/api/v1/campaigns/{created['id']}/report",
                        headers=marketing).get_json()["recommended_products"]
    targeted = len([p for p in got.values() if not p.holdout])
    assert report["targeted"] == {"buyers": 2, "lines": 2, "buyer_rate": 2 / targeted}
    assert report["holdout"]["buyers"] == 0 and report["holdout"]["lines"] == 0
