"""The scheduler: APScheduler with its job store in the app's database, run as its own
process (``flask scheduler run``) or in the web process (``SCHEDULER_EMBEDDED=1``).

However many scheduler processes run, one is active: the one holding the leader lock,
a PostgreSQL session advisory lock (held by a connection of its own) or, on SQLite,
an exclusive lock on a file beside the database. The others try again every
SCHEDULER_POLL_SECONDS; when the active process dies, its connection (or file) closes,
the lock is free, and a standby takes over within that time. The active process checks
its lock as often, and stops its scheduler if it lost it; at the same time it wakes its
scheduler, which then sees the date jobs other processes wrote into the job store
(``campaigns.date_jobs``: a campaign's start, a survey due now) within that time too.
The active process writes a heartbeat (``service_state`` row ``scheduler``) every
SCHEDULER_HEARTBEAT_SECONDS, which /healthz reports.
"""

from __future__ import annotations

import fcntl
import logging
import threading
import time
from pathlib import Path
from typing import Any

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from flask import Flask
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from campaigns import jobs
from crm import service_state
from crm.db import db

log = logging.getLogger("campaigns.scheduler")
LOCK_NAME = "crm-scheduler"
HEARTBEAT = "scheduler"  # its row in service_state


class PostgresLeadership:
    def __init__(self) -> None:
        self.conn: Connection | None = None

    def acquire(self) -> bool:
        try:
            if self.conn is None:
                self.conn = db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            return bool(self.conn.scalar(
                text("SELECT pg_try_advisory_lock(hashtextextended(:n, 0))"), {"n": LOCK_NAME}))
        except SQLAlchemyError:
            self.release()
            return False

    def held(self) -> bool:
        try:
            return self.conn is not None and self.conn.scalar(text("SELECT 1")) == 1
        except SQLAlchemyError:
            return False

    def release(self) -> None:
        if self.conn is not None:
            try:
                self.conn.invalidate()  # closed, not pooled: the session lock goes with it
            finally:
                self.conn = None


class FileLeadership:
    def __init__(self, database: str) -> None:
        self.path = Path(f"{database}.scheduler-lock")
        self.file: Any = None

    def acquire(self) -> bool:
        self.file = self.file or self.path.open("a")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def held(self) -> bool:
        return self.file is not None

    def release(self) -> None:
        if self.file is not None:
            self.file.close()  # closing the file drops the lock
            self.file = None


def leadership() -> PostgresLeadership | FileLeadership:
    if db.engine.dialect.name == "postgresql":
        return PostgresLeadership()
    return FileLeadership(db.engine.url.database or "memory")


def build(app: Flask) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=db.engine,
                                                 tablename="apscheduler_jobs")},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 60},
        timezone="UTC")
    wanted = jobs.schedule(app.config)
    scheduler.start(paused=True)
    for job in scheduler.get_jobs():  # jobs no longer wanted; date jobs stay (run_at)
        if job.id.split("@", 1)[0] not in wanted:
            job.remove()
    for name, trigger in wanted.items():
        scheduler.add_job("campaigns.jobs:run", args=[name], id=name, name=name,
                          replace_existing=True, **trigger)
    scheduler.resume()
    return scheduler


def run(app: Flask, stop: threading.Event) -> None:
    """Take part in leader election until ``stop`` is set; schedule jobs while leader."""
    jobs.bind(app)
    poll = app.config["SCHEDULER_POLL_SECONDS"]
    with app.app_context():
        lock = leadership()
        announced = False
        while not stop.is_set():
            if not lock.acquire():
                if not announced:
                    log.info("scheduler %s: standby, another process is active", jobs.NODE)
                    announced = True
                stop.wait(poll)
                continue
            log.info("scheduler %s: active", jobs.NODE)
            scheduler = build(app)
            beaten = 0.0
            try:
                while True:
                    beaten = _heartbeat(app, beaten)
                    if stop.wait(poll):
                        break
                    if not lock.held():
                        log.warning("scheduler %s: lost the leader lock", jobs.NODE)
                        break
                    # date jobs written by other processes (campaigns.date_jobs): the
                    # scheduler only looks at its store when it expects a job of its own
                    scheduler.wakeup()
            finally:
                scheduler.shutdown(wait=True)
                lock.release()
                announced = False
        lock.release()


def _heartbeat(app: Flask, beaten: float) -> float:
    """Write the active scheduler's heartbeat (read by /healthz) every
    SCHEDULER_HEARTBEAT_SECONDS; return when it was last written."""
    now = time.monotonic()
    if now - beaten < app.config["SCHEDULER_HEARTBEAT_SECONDS"]:
        return beaten
    try:
        service_state.beat(HEARTBEAT, jobs.NODE)
        db.session.commit()
    except SQLAlchemyError as e:
        db.session.rollback()
        log.warning("scheduler %s: heartbeat not written: %s", jobs.NODE, type(e).__name__)
        return beaten
    return now


def start_embedded(app: Flask) -> threading.Event:
    """Run the scheduler in a daemon thread of this process; set the event to stop it."""
    stop = threading.Event()
    threading.Thread(target=run, args=(app, stop), name="scheduler", daemon=True).start()
    return stop
