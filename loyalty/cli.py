"""`flask loyalty ...`: check balances and run the points jobs by hand."""

from __future__ import annotations

import json
import sys

import click
from flask.cli import AppGroup

from crm.db import db
from loyalty import accounts, jobs

loyalty_cli = AppGroup("loyalty", help="Points ledger checks and jobs.")


@loyalty_cli.command("verify")
def verify_command() -> None:
    """Recompute every balance from the ledger and the lots; exit 1 on any difference."""
    problems = accounts.verify()
    db.session.rollback()
    for problem in problems:
        click.echo(json.dumps(problem))
    click.echo(f"{len(problems)} account(s) differ from their ledger.")
    sys.exit(1 if problems else 0)


@loyalty_cli.command("release-pending")
def release_command() -> None:
    """Release pending points whose return window has passed."""
    count = jobs.release_pending()
    db.session.commit()
    click.echo(f"released {count} lot(s)")


@loyalty_cli.command("expire-points")
def expire_command() -> None:
    """Expire points past their expiry date."""
    count = jobs.expire_points()
    db.session.commit()
    click.echo(f"expired {count} lot(s)")


@loyalty_cli.command("expire-held-returns")
def expire_held_command() -> None:
    """Expire returns held longer than HELD_RETURN_DAYS without their sale (alerting)."""
    count = jobs.expire_held_returns()
    db.session.commit()
    click.echo(f"expired {count} held return(s)")


@loyalty_cli.command("review-tiers")
def review_command() -> None:
    """Review every member's tier (upgrades, scheduled and due downgrades)."""
    counts = jobs.review_tiers()
    db.session.commit()
    click.echo(json.dumps(counts))


recommendations_cli = AppGroup("recommendations", help="The recommendation model.")


@recommendations_cli.command("refresh")
def refresh_command() -> None:
    """Rebuild the recommendation model from the window's purchases."""
    counts = jobs.refresh_recommendations()
    db.session.commit()
    click.echo(json.dumps(counts))
