"""Campaigns and surveys on time (issue 18, point 7): a real `flask scheduler run` whose
periodic jobs are an hour apart, so that only the date jobs written at activation or at
the sale (campaigns.date_jobs) can start the work within the test's wait."""

from __future__ import annotations

import pickle
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from campaigns.models import Campaign, Message, apscheduler_jobs
from crm.db import db
from tests.campaigns.conftest import flask_process
from tests.campaigns.test_scheduler import _stop, _wait_for

EVERYONE = {"field": "consent_sms", "op": "eq", "value": True}
HOUR = "3600"  # every periodic job: never within a test


@pytest.fixture
def marketing(factory):
    return factory.headers("marketing")


@pytest.fixture
def scheduler(database_url, twilio, app):
    """start(): a scheduler process with the periodic jobs an hour apart; active when
    start() returns."""
    started = []

    def start():
        env = {"SCHEDULER_POLL_SECONDS": "0.3", "SMS_SEND_INTERVAL_SECONDS": HOUR,
               "SURVEY_DISPATCH_SECONDS": HOUR, "CAMPAIGN_RUN_SECONDS": HOUR,
               "WEBHOOK_DELIVER_INTERVAL_SECONDS": HOUR,
               "TWILIO_ACCOUNT_SID": app.config["TWILIO_ACCOUNT_SID"],
               "TWILIO_AUTH_TOKEN": app.config["TWILIO_AUTH_TOKEN"],
               "TWILIO_FROM": "+15005550006", "TWILIO_API_BASE_URL": twilio.url}
        process = flask_process(database_url, "scheduler", "run", **env)
        lines: list[str] = []
        threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")),
                         daemon=True).start()
        started.append((process, lines))
        _wait_for(lambda: any(": active" in line for line in lines), 60)
        return process
    yield start
    for process, lines in started:
        output = _stop(process) + "".join(lines)
        print("\n".join(line for line in output.splitlines()
                        if "campaigns." in line or "apscheduler.executors" in line))


def _campaign(client, marketing, at: datetime) -> int:
    r = client.post("/api/v1/segments", headers=marketing, json={"name": "s", "rule": EVERYONE})
    r = client.post("/api/v1/campaigns", headers=marketing, json={
        "name": "On time", "segment_id": r.get_json()["id"], "template": "Hi {first_name}!",
        "holdout_percent": 0, "schedule": {"at": at.isoformat()}})
    assert r.status_code == 201, r.get_json()
    return r.get_json()["id"]


def _activate(client, marketing, campaign_id: int) -> None:
    r = client.post(f"/api/v1/campaigns/{campaign_id}/activate", headers=marketing)
    assert r.status_code == 200, r.get_json()


def _ran(campaign_id: int) -> Campaign | None:
    db.session.rollback()
    campaign = db.session.get(Campaign, campaign_id, populate_existing=True)
    return campaign if campaign.last_run_at is not None else None


@pytest.mark.slow
def test_a_campaign_starts_at_its_time_not_at_the_next_poll(client, factory, marketing,
                                                            member, twilio, scheduler):
    people = [member(first_name=f"P{i}") for i in range(3)]
    scheduler()
    at = datetime.now(UTC) + timedelta(seconds=2)
    campaign_id = _campaign(client, marketing, at)
    _activate(client, marketing, campaign_id)
    campaign = _wait_for(lambda: _ran(campaign_id), 30)
    late = (campaign.last_run_at - at).total_seconds()
    print(f"campaign due at {at:%H:%M:%S.%f} ran {late:.2f} s after its time")
    assert campaign.last_run_at >= at and campaign.status == "completed"
    _wait_for(lambda: len(twilio.bodies()) == 3, 30)  # and the sender went at once too
    assert sorted(twilio.bodies()) == [f"Hi {p.first_name}!" for p in people]


@pytest.mark.slow
def test_a_campaign_activated_after_its_time_starts_at_once(client, factory, marketing,
                                                            member, twilio, scheduler):
    member()
    campaign_id = _campaign(client, marketing, datetime.now(UTC) - timedelta(hours=1))
    _activate(client, marketing, campaign_id)  # before any scheduler runs: the job waits
    [job_id] = db.session.scalars(select(apscheduler_jobs.c.id)).all()
    assert job_id.startswith("run-campaigns@campaign-")
    started = datetime.now(UTC)
    scheduler()  # a leader taking over keeps the date jobs it finds
    campaign = _wait_for(lambda: _ran(campaign_id), 30)
    print(f"campaign ran {(campaign.last_run_at - started).total_seconds():.2f} s after "
          "the scheduler started")
    _wait_for(lambda: len(twilio.bodies()) == 1, 30)


@pytest.mark.slow
def test_a_survey_due_at_once_goes_out_within_seconds(client, factory, marketing, member,
                                                      till, twilio, scheduler):
    r = client.post("/api/v1/surveys", headers=marketing, json={
        "name": "Right after", "kind": "nps", "question": "How likely are you to recommend us?",
        "delay_hours": 0, "throttle_days": 0})
    assert r.status_code == 201, r.get_json()
    person = member()
    scheduler()
    sold = time.monotonic()
    till.buy({"phone": person.phone})
    _wait_for(lambda: twilio.sent_to(person.phone), 30)
    print(f"survey SMS sent {time.monotonic() - sold:.2f} s after the sale")
    [sent] = twilio.sent_to(person.phone)
    assert "How likely are you to recommend us?" in sent["body"]
    db.session.rollback()
    assert db.session.scalar(select(Message.purpose)) == "survey"


def test_date_jobs_are_written_with_the_decision(client, factory, marketing, till, member):
    """Written in the transaction that wants them, one per second of sales, and only for
    work due before the periodic job's next turn."""
    client.post("/api/v1/surveys", headers=marketing, json={
        "name": "Later", "kind": "nps", "question": "Q?", "delay_hours": 2,
        "throttle_days": 0})
    till.buy({"phone": member().phone})
    assert db.session.scalars(select(apscheduler_jobs.c.id)).all() == []  # due in 2 h
    client.post("/api/v1/surveys", headers=marketing, json={
        "name": "Now", "kind": "nps", "question": "Q?", "delay_hours": 0,
        "throttle_days": 0})
    for _ in range(3):
        till.buy({"phone": member().phone})
    db.session.rollback()
    jobs = db.session.execute(select(apscheduler_jobs)).all()
    assert 1 <= len(jobs) <= 2 and all(j.id.startswith("dispatch-surveys@") for j in jobs)
    state = pickle.loads(jobs[0].job_state)
    assert (state["func"], state["args"]) == ("campaigns.jobs:run", ("dispatch-surveys",))
    at = datetime.now(UTC) + timedelta(days=1)
    campaign_id = _campaign(client, marketing, at)
    _activate(client, marketing, campaign_id)
    db.session.rollback()
    row = db.session.execute(select(apscheduler_jobs).where(
        apscheduler_jobs.c.id.like("run-campaigns@%"))).one()
    assert row.next_run_time == pytest.approx(at.timestamp())
