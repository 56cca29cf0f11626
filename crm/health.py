"""/healthz: each dependency and an overall status a load balancer can use.

``GET /healthz`` reports every check: ``database`` (answers ``SELECT 1``), ``redis``
(when RATELIMIT_STORAGE_URI is one: answers a ping; else this process counts limits in
memory), ``disk`` (SQLite: free space beside the database file, and no "database or disk
is full" in the last HEALTH_FULL_SECONDS) and ``scheduler`` (the active scheduler's last
heartbeat). ``status`` is ``ok``, ``degraded`` (the service answers, a helper is missing:
Redis, the scheduler) or ``failing`` (the database cannot be read or written): 503.

``GET /healthz?ready`` is the readiness probe: only the checks a request needs (database,
disk), 200 or 503, cheap enough to poll every second."""

from __future__ import annotations

import logging
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from crm import limits, service_state
from crm.db import db, read_only, utcnow
from crm.errors import problem, storage_full_within

health = Blueprint("health", __name__)
log = logging.getLogger("crm.health")

SCHEDULER = "scheduler"
def _database() -> dict[str, Any]:
    try:
        with read_only():
            db.session.execute(text("SELECT 1"))
        return {"status": "ok"}
    except SQLAlchemyError as e:
        log.error("health check: database does not answer: %s", type(e).__name__)
        return {"status": "unreachable"}
    finally:
        db.session.rollback()


def _disk() -> dict[str, Any] | None:
    if db.engine.dialect.name != "sqlite" or not db.engine.url.database:
        return None
    folder = Path(db.engine.url.database).resolve().parent
    free = shutil.disk_usage(folder).free
    minimum = current_app.config["HEALTH_MIN_FREE_BYTES"]
    recent = storage_full_within(current_app.config["HEALTH_FULL_SECONDS"])
    status = "full" if recent or free < minimum else "ok"
    return {"status": status, "free_bytes": free}


def _redis() -> dict[str, Any] | None:
    if not str(current_app.config["RATELIMIT_STORAGE_URI"]).startswith(("redis", "rediss")):
        return None
    if limits.storage_answers():
        return {"status": "ok", "limits": "memory" if limits.in_fallback() else "shared"}
    return {"status": "unreachable", "limits": "memory"}


def _scheduler() -> dict[str, Any]:
    try:
        with read_only():
            at, node = service_state.last_beat(SCHEDULER)
    except SQLAlchemyError:
        return {"status": "unknown"}
    finally:
        db.session.rollback()
    if at is None:
        return {"status": "missing"}
    stale = timedelta(seconds=3 * current_app.config["SCHEDULER_HEARTBEAT_SECONDS"])
    return {"status": "ok" if utcnow() - at <= stale else "stale",
            "last_heartbeat": at.isoformat(), "node": node}


@health.get("/healthz", endpoint="healthz")
def healthz() -> Response:
    checks: dict[str, Any] = {"database": _database()}
    disk = _disk()
    if disk is not None:
        checks["disk"] = disk
    failing = checks["database"]["status"] != "ok" or (disk or {}).get("status") == "full"
    if "ready" not in request.args:
        redis = _redis()
        if redis is not None:
            checks["redis"] = redis
        if checks["database"]["status"] == "ok":
            checks["scheduler"] = _scheduler()
    degraded = any(c["status"] != "ok" for c in checks.values())
    status = "failing" if failing else "degraded" if degraded else "ok"
    if failing:
        return problem(503, detail="The service cannot serve requests: see checks.",
                       slug="unhealthy", headers={"Retry-After": "5"}, health=status,
                       checks=checks)
    return jsonify(status=status, checks=checks)
