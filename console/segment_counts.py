"""Segment counts for the builder, off the request: a count runs in a small thread pool
(its own app context and database session) bounded by ``SEGMENT_COUNT_TIMEOUT`` seconds
(campaigns.segment_count); the page waits ``SEGMENT_COUNT_WAIT`` seconds for it, which is
enough on the demo's data, and otherwise shows that it is counting and asks again, with
the same rule, until the figure is there. A user's newer rule stops their older count,
so typing never piles up queries.

A count is known by the user and the rule's text: asking again for the same rule finds
the same count. Jobs live in this process only; a poll that reaches another node (or a
restarted one) starts the count there, so nothing is lost but time."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flask import Flask, current_app

from campaigns.segment_count import CountStopped, Stopper, bounded_preview
from crm.db import db, read_only, utcnow
from crm.errors import DomainError

WAIT = 1.0  # SEGMENT_COUNT_WAIT: seconds a request waits for the figure
TIMEOUT = 120.0  # SEGMENT_COUNT_TIMEOUT: seconds a count may run on the database
KEEP_SECONDS = 30  # a finished count is kept (and reused) this long after it ended
MAX_JOBS = 200

log = logging.getLogger(__name__)
_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="segment-count")
_lock = threading.Lock()


@dataclass
class Job:
    key: str
    future: Future
    stopper: Stopper
    started: float = field(default_factory=time.monotonic)


@dataclass
class Outcome:
    """``done`` with ``count``, ``sample`` (customer ids and names) and ``at``, or
    ``error``; not done: still counting for ``elapsed`` seconds."""

    done: bool
    count: int | None = None
    sample: list[dict[str, Any]] = field(default_factory=list)
    at: datetime | None = None
    error: str | None = None
    elapsed: float = 0.0
    key: str = ""


_jobs: dict[str, Job] = {}
_latest: dict[str, str] = {}  # who -> the key of their newest count


def key_of(who: str, rule: Any) -> str:
    text = json.dumps(rule, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{who}\n{text}".encode()).hexdigest()[:32]


def count(who: str, rule: Any, wait: float | None = None) -> Outcome:
    """The count of ``rule`` for ``who`` (a user, or a saved segment's list row): the
    figure if it is ready within ``wait`` seconds, else the progress so far."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    wait = app.config.get("SEGMENT_COUNT_WAIT", WAIT) if wait is None else wait
    key = key_of(who, rule)
    with _lock:
        _forget_old()
        job = _jobs.get(key)
        if job is None or (job.future.done() and job.future.result().get("stopped")):
            stopper = Stopper()
            job = Job(key, _pool.submit(_run, app, rule, stopper), stopper)
            _jobs[key] = job
        older = _latest.get(who)
        _latest[who] = key
        previous = _jobs.get(older) if older and older != key else None
    if previous is not None:
        previous.stopper.stop()  # the rule changed: that figure is wanted no more
    try:
        result = job.future.result(timeout=max(wait, 0))
    except FutureTimeout:
        return Outcome(False, elapsed=time.monotonic() - job.started, key=key)
    if result.get("stopped"):  # stopped by a newer rule, then asked for again
        return Outcome(False, elapsed=time.monotonic() - job.started, key=key)
    return Outcome(True, key=key, count=result.get("count"), sample=result.get("sample", []),
                   at=result.get("at"), error=result.get("error"))


def _run(app: Flask, rule: Any, stopper: Stopper) -> dict[str, Any]:
    with app.app_context(), read_only():  # a reader: never SQLite's write lock
        try:
            seconds = app.config.get("SEGMENT_COUNT_TIMEOUT", TIMEOUT)
            found = bounded_preview(rule, seconds, stopper)
            return {"count": found["count"], "at": utcnow(), "ended": time.monotonic(),
                    "sample": [{"id": c.id, "name": _name(c)} for c in found["sample"]]}
        except CountStopped:
            return {"stopped": True, "ended": time.monotonic()}
        except DomainError as e:
            return {"error": e.detail, "at": utcnow(), "ended": time.monotonic()}
        except Exception as e:  # the database gone, say: said, and logged (the kind only:
            log.error("segment count failed: %s", type(e).__name__)  # no SQL, no values)
            return {"error": "The count failed; it is tried again when the rule changes.",
                    "at": utcnow(), "ended": time.monotonic()}
        finally:
            db.session.rollback()
            db.session.remove()


def _name(customer: Any) -> str:
    names = " ".join(n for n in (customer.first_name, customer.last_name) if n)
    return names or f"Customer {customer.id}"


def _forget_old() -> None:
    now = time.monotonic()
    for key, job in list(_jobs.items()):
        if job.future.done() and now - job.future.result().get("ended", now) > KEEP_SECONDS:
            del _jobs[key]
    while len(_jobs) > MAX_JOBS:  # the oldest first (dicts keep their order)
        key, job = next(iter(_jobs.items()))
        job.stopper.stop()
        del _jobs[key]


def forget() -> None:
    """Tests: stop and drop every count."""
    with _lock:
        for job in _jobs.values():
            job.stopper.stop()
        _jobs.clear()
        _latest.clear()
