"""`flask keys ...`, `flask security ...` and `flask demo`. Each command is one
transaction, but `flask security reencrypt` (one per batch)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click
from flask import Flask
from flask.cli import AppGroup, with_appcontext

from crm import keys, pii, rekey
from crm.db import db
from crm.errors import DomainError
from crm.models import SCOPES

keys_cli = AppGroup("keys", help="Create, list, rotate and revoke API keys.")
_TIMES = ["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]


@keys_cli.command("create")
@click.option("--name", required=True, help="Who or what uses the key.")
@click.option("--scope", "scopes", required=True, multiple=True, type=click.Choice(SCOPES),
              help="Repeat for several scopes.")
@click.option("--store", "store_code", default=None, help="Store code; required for pos.")
@click.option("--expires-at", default=None, type=click.DateTime(_TIMES),
              help="UTC time the key stops working (e.g. 2027-06-30T00:00).")
@click.option("--allowed-ip", "allowed_ips", multiple=True,
              help="An address or CIDR range the key may be used from; repeat for more.")
def create_key_command(name: str, scopes: tuple[str, ...], store_code: str | None,
                       expires_at: datetime | None, allowed_ips: tuple[str, ...]) -> None:
    """Create a key and print it (it is shown this once only)."""
    try:
        row, key = keys.create_key(name, list(scopes), store_code, _utc(expires_at),
                                   list(allowed_ips) or None)
    except DomainError as e:
        raise click.UsageError(e.detail) from None
    db.session.commit()
    click.echo(f"id={row.id} name={row.name} scopes={row.scopes} store={row.store_code or '-'}")
    click.echo(key)


@keys_cli.command("rotate")
@click.argument("key_id", type=int)
@click.option("--overlap-hours", type=float, default=None,
              help="How long the old key keeps working (KEY_ROTATION_OVERLAP_HOURS).")
@click.option("--expires-at", default=None, type=click.DateTime(_TIMES),
              help="UTC time the new key stops working.")
def rotate_key_command(key_id: int, overlap_hours: float | None,
                       expires_at: datetime | None) -> None:
    """Issue a new key for the same client; print it once."""
    try:
        old, row, key = keys.rotate_key(key_id, overlap_hours, _utc(expires_at))
    except DomainError as e:
        raise click.UsageError(e.detail) from None
    db.session.commit()
    click.echo(f"id={row.id} replaces={old.id} "
               f"old key works until {old.expires_at:%Y-%m-%dT%H:%M:%SZ}")
    click.echo(key)


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.replace(tzinfo=UTC)


@keys_cli.command("list")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked keys.")
def list_keys_command(include_revoked: bool) -> None:
    """List keys (never the keys themselves)."""
    for row in db.session.scalars(keys.list_keys(include_revoked)):
        state = "revoked" if row.revoked_at else "active"
        if row.expires_at and not row.revoked_at:
            state = f"until {row.expires_at:%Y-%m-%dT%H:%MZ}"
        used = f"{row.last_used_at:%Y-%m-%dT%H:%MZ}" if row.last_used_at else "never"
        click.echo(f"{row.id}\t{row.prefix}\t{row.name}\t{row.scopes}\t"
                   f"{row.store_code or '-'}\t{state}\tused {used}")


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
    analyze()
    click.echo("Demo data loaded. API keys (shown once; `flask demo` again makes new ones):")
    for name, key in printed:
        click.echo(f"  {name:<16} {key}")
    for line in demo_notes:
        click.echo(line)


def analyze() -> None:
    """Fresh planner statistics after a bulk load: without them PostgreSQL plans the
    first segment counts over a freshly loaded table as if it were empty (seconds, not
    a fraction of one)."""
    with db.engine.begin() as connection:  # ANALYZE may run in a transaction on both
        connection.exec_driver_sql("ANALYZE")
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("PRAGMA optimize")


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


audit_cli = AppGroup("audit", help="The hash-chained audit log.")


@audit_cli.command("verify")
def verify_audit_command() -> None:
    """Recompute the chain; exit 1 naming the first bad row if it is broken."""
    from crm.audit import verify

    checked, bad, why = verify()
    if bad is not None:
        click.echo(f"audit log broken at row {bad}: {why} ({checked} rows before it are "
                   "intact)", err=True)
        raise SystemExit(1)
    click.echo(f"audit log intact: {checked} rows")


security_cli = AppGroup("security", help="Keys that seal personal data (crm/pii.py).")


@security_cli.command("rotate-key")
@with_appcontext
def rotate_pii_key_command() -> None:
    """Add a sealing key; it seals from now on (old ones still open)."""
    ring = pii.keyring()
    if ring.source == "env":
        click.echo("The keys come from PII_KEYS. Put this new key first in it on every node "
                   "(keep the old ones after it), restart them, then run "
                   "`flask security reencrypt`:")
        click.echo(f"  k{len(ring.keys) + 1}:{pii.new_key()}")
        return
    key_id = pii.add_key(Path(ring.source))
    ring.refresh(now=True)
    click.echo(f"Key {key_id} added to {ring.source}: it seals from now on (running "
               f"processes take it within {pii.RELOAD_SECONDS:.0f} s). Back the file up, "
               "then run `flask security reencrypt`.")


@security_cli.command("reencrypt")
@click.option("--batch", default=500, show_default=True, help="Values per transaction.")
@with_appcontext
def reencrypt_command(batch: int) -> None:
    """Seal again, with the current key, every value another key sealed. Runs beside the
    service, a batch per transaction; stopped, run it again to go on."""
    ring = pii.keyring()
    done: dict[str, int] = {}
    for column, count in rekey.reencrypt(batch):
        done[column] = count
    for column, count in done.items():
        click.echo(f"{column}: {count} re-sealed")
    left = {k: n for k, n in rekey.usage().items() if k != ring.current}
    click.echo(f"Every value is sealed with {ring.current}." if not left else
               f"Still sealed with older keys (written meanwhile by processes that had not "
               f"taken the new key yet: run it again): {left}")


@security_cli.command("retire-key")
@click.argument("key_id")
@with_appcontext
def retire_key_command(key_id: str) -> None:
    """Remove a key that seals nothing any more (refused while any value uses it)."""
    ring = pii.keyring()
    if key_id not in ring.ids:
        raise click.ClickException(f"No key {key_id} in the key ring ({', '.join(ring.ids)}).")
    if key_id == ring.current:
        raise click.ClickException(f"{key_id} is the key that seals: rotate first.")
    using = rekey.usage().get(key_id, 0)
    if using:
        raise click.ClickException(f"{using} values are still sealed with {key_id}: run "
                                   "`flask security reencrypt` first.")
    if ring.source == "env":
        click.echo(f"Nothing uses {key_id}: remove it from PII_KEYS on every node.")
        return
    pii.remove_key(Path(ring.source), key_id)
    ring.refresh(now=True)
    click.echo(f"Key {key_id} removed from {ring.source}. Backups made before the "
               "re-encryption still need it: keep it with them, or retire them too.")


def register_cli(app: Flask) -> None:
    app.cli.add_command(security_cli)
    app.cli.add_command(audit_cli)
    app.cli.add_command(keys_cli)
    app.cli.add_command(customers_cli)
    app.cli.add_command(demo_command)
