"""`flask keys ...` and `flask demo`. Each command is one transaction."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup, with_appcontext

from crm import keys
from crm.db import db
from crm.errors import DomainError
from crm.models import SCOPES

keys_cli = AppGroup("keys", help="Create, list and revoke API keys.")


@keys_cli.command("create")
@click.option("--name", required=True, help="Who or what uses the key.")
@click.option("--scope", "scopes", required=True, multiple=True, type=click.Choice(SCOPES),
              help="Repeat for several scopes.")
@click.option("--store", "store_code", default=None, help="Store code; required for pos.")
def create_key_command(name: str, scopes: tuple[str, ...], store_code: str | None) -> None:
    """Create a key and print it (it is shown this once only)."""
    try:
        row, key = keys.create_key(name, list(scopes), store_code)
    except DomainError as e:
        raise click.UsageError(e.detail) from None
    db.session.commit()
    click.echo(f"id={row.id} name={row.name} scopes={row.scopes} store={row.store_code or '-'}")
    click.echo(key)


@keys_cli.command("list")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked keys.")
def list_keys_command(include_revoked: bool) -> None:
    """List keys (never the keys themselves)."""
    for row in db.session.scalars(keys.list_keys(include_revoked)):
        state = "revoked" if row.revoked_at else "active"
        click.echo(f"{row.id}\t{row.prefix}\t{row.name}\t{row.scopes}\t"
                   f"{row.store_code or '-'}\t{state}")


@keys_cli.command("revoke")
@click.argument("key_id", type=int)
def revoke_key_command(key_id: int) -> None:
    """Revoke a key by id."""
    try:
        keys.revoke_key(key_id)
    except DomainError as e:
        raise click.UsageError(e.detail) from None
    db.session.commit()
    click.echo(f"revoked {key_id}")


@click.command("demo")
@with_appcontext
@click.option("--customers", "count", default=3000, show_default=True)
def demo_command(count: int) -> None:
    """Load demo stores and customers and print a fresh key of each scope. Running it
    again adds nothing twice and replaces the demo keys."""
    from crm.demo import demo_notes, load_demo

    printed = load_demo(count)
    db.session.commit()
    click.echo("Demo data loaded. API keys (shown once; `flask demo` again makes new ones):")
    for name, key in printed:
        click.echo(f"  {name:<16} {key}")
    for line in demo_notes:
        click.echo(line)


customers_cli = AppGroup("customers", help="Customer record jobs.")


@customers_cli.command("find-duplicates")
@click.option("--since-days", default=1.0, show_default=True,
              help="Look at customers changed in this many days.")
def find_duplicates_command(since_days: float) -> None:
    """Record likely duplicates for marketers to review (the nightly job)."""
    from datetime import timedelta

    from crm.db import utcnow
    from crm.duplicates import record_suggestions

    made = record_suggestions(utcnow() - timedelta(days=since_days))
    db.session.commit()
    click.echo(f"{made} suggestion(s) recorded")


def register_cli(app: Flask) -> None:
    app.cli.add_command(keys_cli)
    app.cli.add_command(customers_cli)
    app.cli.add_command(demo_command)
