"""`flask users create|list|disable|enable|reset-password`."""

from __future__ import annotations

import sys

import click
from flask.cli import AppGroup

from console import users
from console.models import ROLES
from crm.db import db
from crm.errors import DomainError

users_cli = AppGroup("users", help="Console users (people who sign in to /console/).")


def _password(from_stdin: bool) -> tuple[str, bool]:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n"), False
    return users.new_password(), True


@users_cli.command("create")
@click.option("--email", required=True)
@click.option("--role", required=True, type=click.Choice(ROLES))
@click.option("--name", default="")
@click.option("--timezone", default=None, help="Zone times are shown in (IANA name).")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
def create_command(email: str, role: str, name: str, timezone: str | None,
                   password_stdin: bool) -> None:
    """Create a user; prints a one-time password unless --password-stdin."""
    password, show = _password(password_stdin)
    try:
        user = users.create_user(email, role, password, name, timezone)
    except DomainError as e:
        raise click.UsageError(e.detail) from None
    db.session.commit()
    click.echo(f"id={user.id} email={user.email} role={user.role}")
    if show:
        click.echo(f"password: {password}")


@users_cli.command("list")
def list_command() -> None:
    """List users (never their passwords)."""
    for u in db.session.scalars(users.list_users()):
        last = u.last_sign_in_at.isoformat(timespec="seconds") if u.last_sign_in_at else "-"
        click.echo(f"{u.id}\t{u.email}\t{u.role}\t{'active' if u.active else 'disabled'}\t{last}")


def _find(email: str) -> users.User:
    user = users.by_email(email)
    if user is None:
        raise click.UsageError(f"No user has the email {email}.")
    return user


@users_cli.command("disable")
@click.argument("email")
def disable_command(email: str) -> None:
    """Disable a user: they can no longer sign in (open sessions end at their next page)."""
    users.set_active(_find(email), False)
    db.session.commit()
    click.echo(f"disabled {email}")


@users_cli.command("enable")
@click.argument("email")
def enable_command(email: str) -> None:
    users.set_active(_find(email), True)
    db.session.commit()
    click.echo(f"enabled {email}")


@users_cli.command("reset-password")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
def reset_command(email: str, password_stdin: bool) -> None:
    """Set a new password; prints a one-time password unless --password-stdin."""
    password, show = _password(password_stdin)
    try:
        users.set_password(_find(email), password)
    except DomainError as e:
        raise click.UsageError(e.detail) from None
    db.session.commit()
    click.echo(f"password reset for {email}")
    if show:
        click.echo(f"password: {password}")
