"""Live segment counts are seen by every process (#14): a count started by one app is
answered by another app on the same database without counting again, "counting" while
its heartbeat is fresh, and counted anew once the process running it is gone. Two app
instances in one test process stand for two workers: each keeps its own jobs, pool and
heartbeat (app.extensions), and they share only the database."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from campaigns import segments
from console import segment_counts
from console.segment_counts import SegmentCountJob
from crm import create_app
from crm.db import db, utcnow
from crm.demo import load_demo
from tests.campaigns.test_segment_summary import EXAMPLE

RULE = {"all": [{"field": "consent_sms", "op": "eq", "value": True}]}


@pytest.fixture
def other(app, database_url, tmp_path):
    """A second worker: its own app, the same database and keys."""
    second = create_app({**{k: app.config[k] for k in ("RATELIMIT_DEFAULT", "QUIET_HOURS")},
                         "TESTING": True, "DATABASE_URL": database_url,
                         "INSTANCE_PATH": app.instance_path, "LOG_LEVEL": "WARNING"})
    yield second
    with second.app_context():
        db.engine.dispose()


@pytest.fixture(autouse=True)
def _no_counts_left(app):
    yield
    with app.app_context():
        segment_counts.forget()


def _until_done(app, who, rule):
    with app.app_context():
        for _ in range(200):
            outcome = segment_counts.count(who, rule, wait=0.1)
            if outcome.done:
                return outcome
        raise AssertionError("never counted")


def _row(app, key):
    with app.app_context():
        return db.session.scalar(select(SegmentCountJob).where(SegmentCountJob.key == key))


def test_a_count_made_on_one_worker_is_read_on_another(app, other, factory):
    load_demo(60)
    db.session.commit()
    first = _until_done(app, "user:1", EXAMPLE)
    assert first.count == segments.count(segments.checked(EXAMPLE))
    row = _row(app, first.key)
    assert row.status == "done" and row.count == first.count
    assert row.sample == [m["id"] for m in first.sample]  # ids only, no names
    with other.app_context():
        second = segment_counts.count("user:1", EXAMPLE, wait=0)
    assert second.done and second.count == first.count and second.at == first.at
    assert second.sample == first.sample  # names read when shown
    assert other.extensions.get("segment_counts") is None or \
        not other.extensions["segment_counts"].jobs  # the other worker counted nothing


def test_a_running_count_elsewhere_is_waited_for_then_taken_over_when_its_worker_died(
        app, other, factory):
    load_demo(30)
    db.session.commit()
    key = segment_counts.key_of("user:2", RULE)
    now = utcnow()
    db.session.add(SegmentCountJob(key=key, status="running", started_at=now - timedelta(
        seconds=3), heartbeat_at=now))  # a worker counting it, alive a moment ago
    db.session.commit()
    with other.app_context():
        waiting = segment_counts.count("user:2", RULE, wait=0)
    assert not waiting.done and waiting.elapsed >= 3
    assert not other.extensions["segment_counts"].jobs  # it did not count it too
    # that worker died: its heartbeat goes stale, and the next poll counts it here
    db.session.execute(update(SegmentCountJob).where(SegmentCountJob.key == key).values(
        heartbeat_at=now - timedelta(seconds=60)))
    db.session.commit()
    taken = _until_done(other, "user:2", RULE)
    assert taken.count == segments.count(segments.checked(RULE))
    assert key in other.extensions["segment_counts"].jobs
    assert _row(app, key).status == "done"


def test_a_long_count_keeps_its_heartbeat_fresh(app, other, factory, monkeypatch):
    """While a count runs, its worker says so every HEARTBEAT seconds: a poll elsewhere
    keeps waiting rather than counting again."""
    load_demo(30)
    db.session.commit()
    monkeypatch.setattr(segment_counts, "HEARTBEAT", 0.05)
    key = segment_counts.key_of("user:3", RULE)
    state = segment_counts._counts(other)  # a worker whose heartbeat has not started
    gate = state.pool.submit(time.sleep, 0.6)  # both pool threads busy: the count waits
    other_gate = state.pool.submit(time.sleep, 0.6)
    with other.app_context():
        assert not segment_counts.count("user:3", RULE, wait=0).done
    started = _row(app, key).heartbeat_at
    time.sleep(0.3)
    assert _row(app, key).heartbeat_at > started  # beating while it waits and runs
    gate.result(), other_gate.result()
    assert _until_done(other, "user:3", RULE).done
