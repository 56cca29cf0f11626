"""The scheduler: real `flask scheduler run` processes on the test database. One is
active; when it dies, a standby takes over within seconds; jobs run and say so."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from campaigns import jobs
from campaigns.models import JobStatus, Message
from crm import create_app
from crm.db import db
from tests.campaigns.conftest import flask_process, message, queue

FAST = {"SCHEDULER_POLL_SECONDS": "0.3", "SMS_SEND_INTERVAL_SECONDS": "0.5"}


def _last_run(name: str = "send-outbox") -> JobStatus | None:
    db.session.rollback()
    return db.session.get(JobStatus, name, populate_existing=True)


def _wait_for(predicate, seconds: float = 20.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


def _lines(process) -> list[str]:
    """What ``process`` prints, as it prints it (read by a thread of its own)."""
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")),
                     daemon=True).start()
    return lines


def _stop(*processes) -> str:
    output = ""
    for process in processes:
        if process.poll() is None:
            process.terminate()
        try:
            output += process.communicate(timeout=20)[0]
        except Exception:
            process.kill()
            output += process.communicate()[0]
    return output


@pytest.mark.slow
def test_one_scheduler_is_active_and_a_standby_takes_over(factory, database_url):
    first = flask_process(database_url, "scheduler", "run", **FAST)
    second, heard = None, []
    try:
        run = _wait_for(lambda: (r := _last_run()) and r.ok and r)
        assert run.node.endswith(f":{first.pid}")
        second = flask_process(database_url, "scheduler", "run", **FAST)
        heard = _lines(second)
        _wait_for(lambda: any("standby" in line for line in heard), 60)  # up, and waiting
        time.sleep(1)
        runs_before = _last_run().runs
        time.sleep(1.5)
        run = _last_run()
        assert run.node.endswith(f":{first.pid}") and run.runs > runs_before
        first.kill()  # dies without letting go: its database connection (or file) closes
        killed_at = time.monotonic()
        run = _wait_for(lambda: (r := _last_run()) and r.node.endswith(f":{second.pid}") and r)
        took_over = time.monotonic() - killed_at
        print(f"standby took over {took_over:.1f} s after the active scheduler was killed")
        assert took_over < 10, took_over
        for name in jobs.WORK:  # every job is scheduled by the new leader too
            assert _last_run(name) is None or _last_run(name).ok is not False
    finally:
        output = _stop(first, *([second] if second else [])) + "".join(heard)
    assert "standby" in output and output.count(": active") == 2, output


@pytest.mark.slow
def test_the_scheduler_sends_the_outbox(factory, database_url, twilio, member, app):
    message_id = queue(member(), "Scheduled hello")
    env = {**FAST, "TWILIO_ACCOUNT_SID": app.config["TWILIO_ACCOUNT_SID"],
           "TWILIO_AUTH_TOKEN": app.config["TWILIO_AUTH_TOKEN"],
           "TWILIO_FROM": "+15005550006", "TWILIO_API_BASE_URL": twilio.url}
    process = flask_process(database_url, "scheduler", "run", **env)
    try:
        _wait_for(lambda: message(message_id).status == "submitted")
    finally:
        _stop(process)
    assert twilio.bodies() == ["Scheduled hello"]
    assert db.session.scalar(select(Message.attempts)) == 1


@pytest.mark.slow
def test_embedded_scheduler_starts_with_the_first_request(factory, database_url, tmp_path):
    app = create_app({"DATABASE_URL": database_url, "INSTANCE_PATH": str(tmp_path),
                      "SCHEDULER_EMBEDDED": True, "SCHEDULER_POLL_SECONDS": 0.3,
                      "SMS_SEND_INTERVAL_SECONDS": 0.5, "LOG_LEVEL": "WARNING"})
    assert app.test_client().get("/healthz").status_code == 200
    try:
        run = _wait_for(lambda: (r := _last_run()) and r.ok and r)
        assert run.node == jobs.NODE  # this very process
    finally:
        app.extensions["scheduler_stop"].set()
        time.sleep(0.5)
        with app.app_context():
            db.engine.dispose()


def test_jobs_record_their_runs(factory):
    started = datetime.now(UTC)
    assert jobs.run_here("dispatch-surveys") == {"invited": 0, "throttled": 0,
                                                 "no_consent": 0, "no_phone": 0}
    jobs.run_here("dispatch-surveys")
    run = _last_run("dispatch-surveys")
    assert (run.runs, run.ok, run.node) == (2, True, jobs.NODE)
    assert run.started_at >= started and run.finished_at >= run.started_at


def test_scheduler_cli_runs_a_job_and_shows_status(runner, factory):
    result = runner.invoke(args=["scheduler", "run-job", "expire-points"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(args=["scheduler", "status"])
    assert '"job": "expire-points"' in result.output and '"ok": true' in result.output
    assert runner.invoke(args=["scheduler", "run-job", "nope"]).exit_code != 0
