"""Segment counts for the builder, off the request: a count runs in a small thread pool
(its own app context and database session) bounded by ``SEGMENT_COUNT_TIMEOUT`` seconds
(campaigns.segment_count); the page waits ``SEGMENT_COUNT_WAIT`` seconds for it, which is
enough on the demo's data, and otherwise shows that it is counting and asks again, with
the same rule, until the figure is there. A user's newer rule stops their older count,
so typing never piles up queries.

A count is known by the user and the rule's text: asking again for the same rule finds
the same count, on whichever worker or node the poll lands. Each count is a row of
``segment_count_jobs``: the process running it keeps its heartbeat fresh every
``HEARTBEAT`` seconds and writes the figure there when done; another process that is
asked answers "counting" while the heartbeat is fresh and the figure once it is written,
and counts anew only when the heartbeat is older than ``SEGMENT_COUNT_STALE`` seconds
(the process died) or the figure older than ``KEEP_SECONDS``. The sample keeps customer
ids only; names are read when shown."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flask import Flask, current_app, has_app_context
from sqlalchemy import JSON, BigInteger, Index, String, delete, select, update
from sqlalchemy.orm import Mapped, mapped_column

from campaigns.segment_count import CountStopped, Stopper, bounded_preview
from crm.db import db, insert_ignoring_conflicts, read_only, utcnow, write_intent
from crm.errors import DomainError
from crm.models import Customer

WAIT = 1.0  # SEGMENT_COUNT_WAIT: seconds a request waits for the figure
TIMEOUT = 120.0  # SEGMENT_COUNT_TIMEOUT: seconds a count may run on the database
STALE = 10.0  # SEGMENT_COUNT_STALE: a running count's heartbeat older than this is dead
HEARTBEAT = 2.0  # seconds between a running count's heartbeats
KEEP_SECONDS = 30  # a finished count is kept (and reused) this long after it ended
MAX_JOBS = 200

log = logging.getLogger(__name__)


class SegmentCountJob(db.Model):
    """One live count, seen by every process: ``running`` (with a heartbeat), then
    ``done`` (count, sample ids, when counted), ``error`` or ``stopped``."""

    __tablename__ = "segment_count_jobs"
    __table_args__ = (Index("ix_segment_count_jobs_heartbeat", "heartbeat_at"),)

    key: Mapped[str] = mapped_column(String(32), primary_key=True)
    status: Mapped[str] = mapped_column(String(10))
    count: Mapped[int | None] = mapped_column(BigInteger)
    sample: Mapped[list | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(String(500))
    counted_at: Mapped[datetime | None]
    started_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime]


_T = SegmentCountJob.__table__


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


class _Counts:
    """This process's counts for one app: the pool, the jobs it runs, each user's
    newest key, and the heartbeat thread."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="segment-count")
        self.lock = threading.Lock()
        self.jobs: dict[str, Job] = {}
        self.latest: dict[str, str] = {}  # who -> the key of their newest count
        self.beating = False

    def running_keys(self) -> list[str]:
        with self.lock:
            return [k for k, job in self.jobs.items() if not job.future.done()]


_all: list[_Counts] = []
_all_lock = threading.Lock()


def _counts(app: Flask) -> _Counts:
    state = app.extensions.get("segment_counts")
    if state is None:
        with _all_lock:
            state = app.extensions.setdefault("segment_counts", _Counts(app))
            if state not in _all:
                _all.append(state)
    return state


def key_of(who: str, rule: Any) -> str:
    text = json.dumps(rule, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{who}\n{text}".encode()).hexdigest()[:32]


def count(who: str, rule: Any, wait: float | None = None) -> Outcome:
    """The count of ``rule`` for ``who`` (a user, or a saved segment's list row): the
    figure if it is ready within ``wait`` seconds, else the progress so far."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    state = _counts(app)
    wait = app.config.get("SEGMENT_COUNT_WAIT", WAIT) if wait is None else wait
    key = key_of(who, rule)
    with state.lock:
        _forget_old(state)
        job = _usable(state.jobs.get(key))
    if job is None:
        shared = _shared(key)
        if shared is not None:
            return shared
        with state.lock:
            job = _usable(state.jobs.get(key))
            if job is None:
                stopper = Stopper()
                job = Job(key, state.pool.submit(_run, app, key, rule, stopper), stopper)
                state.jobs[key] = job
                _beat(state)
    with state.lock:
        older = state.latest.get(who)
        state.latest[who] = key
        previous = state.jobs.get(older) if older and older != key else None
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


def _usable(job: Job | None) -> Job | None:
    """A job of this process that counts or has counted (not one a newer rule stopped)."""
    if job is not None and job.future.done() and job.future.result().get("stopped"):
        return None
    return job


@contextmanager
def _own_transaction() -> Iterator[Any]:
    """A short write of the jobs table on a connection of its own (the request's
    session may be a reader)."""
    token = write_intent.set(True)
    try:
        with db.engine.begin() as connection:
            yield connection
    finally:
        write_intent.reset(token)


def _shared(key: str) -> Outcome | None:
    """What another process knows of this count: its figure, or that it is counting;
    None when this process is to count it, the row claimed for it. Read as the request
    reads (no write lock); only a claim writes."""
    now = utcnow()
    stale = now - timedelta(seconds=current_app.config.get("SEGMENT_COUNT_STALE", STALE))
    row = db.session.execute(select(_T).where(_T.c.key == key)).one_or_none()
    if row is not None:
        if row.status == "running" and row.heartbeat_at > stale:
            return Outcome(False, elapsed=(now - row.started_at).total_seconds(), key=key)
        if row.status in ("done", "error") and \
                row.heartbeat_at > now - timedelta(seconds=KEEP_SECONDS):
            return Outcome(True, key=key, count=row.count, at=row.counted_at,
                           error=row.error, sample=_named(row.sample or []))
    return None if _claim(key, row, now) else Outcome(False, key=key)


def _claim(key: str, row: Any, now: datetime) -> bool:
    """Mark the count as running here; False if another process claimed it since
    ``row`` (None: there was none) was read."""
    claim = {"status": "running", "count": None, "sample": None, "error": None,
             "counted_at": None, "started_at": now, "heartbeat_at": now}
    with _own_transaction() as connection:
        if row is None:
            claimed = connection.execute(insert_ignoring_conflicts(_T, "key").values(
                key=key, **claim)).rowcount
            connection.execute(delete(_T).where(_T.c.heartbeat_at < now - timedelta(hours=1)))
        else:
            claimed = connection.execute(update(_T).where(
                _T.c.key == key, _T.c.heartbeat_at == row.heartbeat_at).values(
                **claim)).rowcount
    return bool(claimed)


def _named(ids: list[int]) -> list[dict[str, Any]]:
    names = {c.id: _name(c) for c in db.session.scalars(
        select(Customer).where(Customer.id.in_(ids)))} if ids else {}
    return [{"id": i, "name": names[i]} for i in ids if i in names]


def _beat(state: _Counts) -> None:
    """Start this app's heartbeat thread if it is not running (under ``state.lock``)."""
    if state.beating:
        return
    state.beating = True
    threading.Thread(target=_heartbeats, args=(state,), name="segment-count-heartbeat",
                     daemon=True).start()


def _heartbeats(state: _Counts) -> None:
    """Every HEARTBEAT seconds, while this process counts, say so in the counts' rows."""
    while True:
        time.sleep(HEARTBEAT)
        keys = state.running_keys()
        if not keys:
            with state.lock:
                if not any(not j.future.done() for j in state.jobs.values()):
                    state.beating = False
                    return
            continue
        try:
            with state.app.app_context(), _own_transaction() as connection:
                connection.execute(update(_T).where(
                    _T.c.key.in_(keys), _T.c.status == "running").values(
                    heartbeat_at=utcnow()))
        except Exception as e:  # the database away for a moment: the next beat tries
            log.warning("segment count heartbeat failed: %s", type(e).__name__)


def _run(app: Flask, key: str, rule: Any, stopper: Stopper) -> dict[str, Any]:
    with app.app_context():
        with read_only():  # a reader: never SQLite's write lock
            result = _counted(app, rule, stopper)
        try:
            with _own_transaction() as connection:
                sample = [c["id"] for c in result.get("sample", [])]
                connection.execute(update(_T).where(_T.c.key == key).values(
                    status="stopped" if result.get("stopped") else
                    "error" if result.get("error") else "done",
                    count=result.get("count"), sample=sample, error=result.get("error"),
                    counted_at=result.get("at"), heartbeat_at=utcnow()))
        except Exception as e:  # this process still answers from its own result
            log.error("segment count not shared: %s", type(e).__name__)
        return result


def _counted(app: Flask, rule: Any, stopper: Stopper) -> dict[str, Any]:
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


def _forget_old(state: _Counts) -> None:
    now = time.monotonic()
    for key, job in list(state.jobs.items()):
        if job.future.done() and now - job.future.result().get("ended", now) > KEEP_SECONDS:
            del state.jobs[key]
    while len(state.jobs) > MAX_JOBS:  # the oldest first (dicts keep their order)
        key, job = next(iter(state.jobs.items()))
        job.stopper.stop()
        del state.jobs[key]


def forget() -> None:
    """Tests and benchmarks: stop and drop every count of this process, and (with an
    app context) every count's row."""
    with _all_lock:
        states = list(_all)
    for state in states:
        with state.lock:
            for job in state.jobs.values():
                job.stopper.stop()
            state.jobs.clear()
            state.latest.clear()
    if has_app_context():
        with _own_transaction() as connection:
            connection.execute(delete(_T))
