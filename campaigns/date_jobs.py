"""Work that must start at its moment, not at the next poll: an APScheduler date job.

``run_at(name, when)`` writes a one-off job into the scheduler's job store (the
``apscheduler_jobs`` table) in the caller's transaction, so the job exists exactly when
the decision that wants it commits, whichever process made it. The active scheduler
reads its store every ``SCHEDULER_POLL_SECONDS`` (``campaigns.scheduler`` wakes it), so
the job runs within about a second of ``when``. A date job runs one of the periodic jobs
of ``campaigns.jobs`` early, and those decide for themselves what is due: a date job
that finds nothing to do (its campaign paused meanwhile) does nothing, and one that is
lost is made up for by the periodic job, which stays the safety net.
"""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta

from apscheduler.job import Job
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.util import datetime_to_utc_timestamp

from campaigns.models import apscheduler_jobs
from crm.db import db, insert_ignoring_conflicts, utcnow

# Never started: only gives the jobs it makes their time zone, as the real one does.
_MAKER = BackgroundScheduler(timezone="UTC")
_written: dict[str, datetime] = {}  # this process's recent date jobs: one write each


def run_at(name: str, when: datetime | None = None, key: str | None = None) -> str:
    """Have the scheduler run the job ``name`` at ``when`` (default: now; a time past is
    now). Jobs with the same ``key`` are one job (default: ``when`` to the second)."""
    now = utcnow()
    when = max(when or now, now)
    job_id = f"{name}@{key or int(when.timestamp())}"
    if _written.get(job_id, now) > now:
        return job_id
    job = Job(_MAKER, id=job_id, name=job_id, func="campaigns.jobs:run", args=(name,),
              kwargs={}, trigger=DateTrigger(when.astimezone(UTC), timezone=UTC),
              executor="default", misfire_grace_time=None, coalesce=True, max_instances=1,
              next_run_time=when.astimezone(UTC))
    db.session.execute(insert_ignoring_conflicts(apscheduler_jobs, "id"), {
        "id": job_id, "next_run_time": datetime_to_utc_timestamp(job.next_run_time),
        "job_state": pickle.dumps(job.__getstate__(), pickle.HIGHEST_PROTOCOL)})
    if len(_written) > 1000:
        for old in [k for k, until in _written.items() if until <= now]:
            del _written[old]
    _written[job_id] = when + timedelta(seconds=1)
    return job_id


def forget() -> None:
    _written.clear()
