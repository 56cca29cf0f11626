"""Scheduled work, run by the scheduler (``campaigns.scheduler``) or by hand from the
CLI. Each job is one function that is safe to run twice; ``run`` gives it an app
context and a transaction, and records its last run in ``job_status``."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from typing import Any

from flask import Flask, current_app
from sqlalchemy.exc import SQLAlchemyError

from campaigns import hook_delivery, planner, segments, sender, surveys
from campaigns.models import JobStatus
from crm.db import db, utcnow
from loyalty import jobs as loyalty_jobs
from loyalty import referrals

log = logging.getLogger("campaigns.jobs")
NODE = f"{socket.gethostname()}:{os.getpid()}"[:100]


def schedule(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """APScheduler trigger arguments per job (every job of WORK)."""
    return {
        "send-outbox": {"trigger": "interval", "seconds": config["SMS_SEND_INTERVAL_SECONDS"]},
        "dispatch-surveys": {"trigger": "interval",
                             "seconds": config["SURVEY_DISPATCH_SECONDS"]},
        "release-pending": {"trigger": "interval", "minutes": 10},
        "expire-points": {"trigger": "interval", "hours": 1},
        "expire-held-returns": {"trigger": "interval", "minutes": 15},
        "review-tiers": {"trigger": "cron", "hour": 3, "minute": 15},
        "run-campaigns": {"trigger": "interval", "seconds": config["CAMPAIGN_RUN_SECONDS"]},
        "refresh-insights": {"trigger": "cron", "hour": 2, "minute": 30},
        "deliver-webhooks": {"trigger": "interval",
                             "seconds": config["WEBHOOK_DELIVER_INTERVAL_SECONDS"]},
        "prune-webhooks": {"trigger": "cron", "hour": 4, "minute": 10},
        "reward-referrals": {"trigger": "interval", "minutes": 10},
        "refresh-recommendations": {"trigger": "cron", "hour": 2, "minute": 45},
    }


# What each job does.
WORK: dict[str, Callable[[], Any]] = {
    "run-campaigns": planner.run_due,
    "refresh-insights": segments.refresh_insights,
    "send-outbox": sender.send_outbox,
    "dispatch-surveys": surveys.dispatch,
    "release-pending": loyalty_jobs.release_pending,
    "expire-points": loyalty_jobs.expire_points,
    "expire-held-returns": loyalty_jobs.expire_held_returns,
    "review-tiers": loyalty_jobs.review_tiers,
    "deliver-webhooks": hook_delivery.deliver,
    "prune-webhooks": hook_delivery.prune,
    "reward-referrals": referrals.reward_due,
    "refresh-recommendations": loyalty_jobs.refresh_recommendations,
}

_app: Flask | None = None


def bind(app: Flask) -> None:
    """The app jobs run in (the scheduler's process has one)."""
    global _app
    _app = app


def run(name: str) -> Any:
    """Run one job now, in its own app context and transaction (what APScheduler
    calls, by the textual reference ``campaigns.jobs:run``)."""
    if _app is None:
        raise RuntimeError("campaigns.jobs.bind(app) was not called in this process.")
    with _app.app_context():
        return run_here(name)


def run_here(name: str) -> Any:
    """Run one job in the current app context; commit its work, or roll it back."""
    _mark(name, started=True)
    try:
        result = WORK[name]()
        db.session.commit()
    except Exception as exc:
        db.session.rollback()
        log.exception("job %s failed", name)
        _mark(name, ok=False, result=repr(exc))
        raise
    _mark(name, ok=True, result=str(result))
    return result


def _mark(name: str, *, started: bool = False, ok: bool | None = None,
          result: str | None = None) -> None:
    try:
        row = db.session.get(JobStatus, name, populate_existing=True)
        if row is None:
            row = JobStatus(name=name, node=NODE, runs=0, started_at=utcnow())
            db.session.add(row)
        if started:
            row.node, row.started_at, row.runs = NODE, utcnow(), row.runs + 1
            row.finished_at = row.ok = row.result = None
        else:
            row.finished_at, row.ok, row.result = utcnow(), ok, (result or "")[:300]
        db.session.commit()
    except SQLAlchemyError:
        db.session.rollback()
        current_app.logger.warning("could not record the status of job %s", name)
