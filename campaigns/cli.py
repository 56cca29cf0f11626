"""`flask scheduler run`, and the messaging jobs by hand."""

from __future__ import annotations

import json
import signal
import threading
from typing import Any

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import select

from campaigns import hook_delivery, jobs, scheduler, sender
from campaigns.models import JobStatus
from crm.db import db

scheduler_cli = AppGroup("scheduler", help="The job scheduler.")
messages_cli = AppGroup("messages", help="The SMS outbox.")
surveys_cli = AppGroup("surveys", help="Satisfaction surveys.")
webhooks_cli = AppGroup("webhooks", help="Outgoing webhooks.")


@scheduler_cli.command("run")
def run_command() -> None:
    """Run the scheduler until stopped (SIGTERM or Ctrl-C). Several may run: one is
    active, the others take over when it stops."""
    stop = threading.Event()

    def stop_on_signal(*_: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, stop_on_signal)
    signal.signal(signal.SIGINT, stop_on_signal)
    click.echo(f"scheduler {jobs.NODE}: starting; jobs: {', '.join(jobs.WORK)}")
    scheduler.run(current_app._get_current_object(), stop)  # type: ignore[attr-defined]
    click.echo(f"scheduler {jobs.NODE}: stopped")


@scheduler_cli.command("status")
def status_command() -> None:
    """Each job's last run: when, where, with what result."""
    for row in db.session.scalars(select(JobStatus).order_by(JobStatus.name)):
        click.echo(json.dumps({"job": row.name, "node": row.node, "runs": row.runs,
                               "started_at": row.started_at.isoformat(),
                               "ok": row.ok, "result": row.result}))


@scheduler_cli.command("run-job")
@click.argument("name", type=click.Choice(sorted(jobs.WORK)))
def run_job_command(name: str) -> None:
    """Run one job now, in this process."""
    click.echo(json.dumps(jobs.run_here(name), default=str))


@messages_cli.command("send")
@click.option("--budget", type=float, default=50.0, show_default=True,
              help="Stop starting new batches after this many seconds.")
def send_command(budget: float) -> None:
    """Send what is due in the outbox now."""
    click.echo(json.dumps(sender.send_outbox(budget_seconds=budget)))
    db.session.commit()


@surveys_cli.command("dispatch")
def dispatch_command() -> None:
    """Turn due survey invitations into SMS now."""
    click.echo(json.dumps(jobs.run_here("dispatch-surveys")))


@webhooks_cli.command("deliver")
@click.option("--budget", type=float, default=50.0, show_default=True,
              help="Stop starting new batches after this many seconds.")
def deliver_command(budget: float) -> None:
    """Send the webhook deliveries that are due now."""
    click.echo(json.dumps(hook_delivery.deliver(budget_seconds=budget)))
    db.session.commit()
