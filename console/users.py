"""Console users: create, list, disable, reset passwords, and check a sign-in."""

from __future__ import annotations

import secrets
from functools import cache
from zoneinfo import available_timezones

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Select, select

from console.models import ROLES, User
from crm.db import db, utcnow
from crm.errors import Conflict, Invalid, get_or_404
from crm.identifiers import InvalidIdentifier, normalize

hasher = PasswordHasher()
MIN_PASSWORD = 12


@cache
def _dummy_hash() -> str:
    """Verified when the email is unknown, so that both failures take the same time
    (made at the first sign-in, not at import: every command imports this module)."""
    return hasher.hash(secrets.token_urlsafe(16))


def normalize_email(email: str) -> str:
    try:
        return normalize("email", email, "US")
    except InvalidIdentifier as e:
        raise Invalid(str(e), errors={"email": [str(e)]}) from None


def new_password() -> str:
    return secrets.token_urlsafe(15)


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise Invalid("The password is too short.",
                      errors={"password": [f"At least {MIN_PASSWORD} characters."]})


def create_user(email: str, role: str, password: str, name: str = "",
                timezone: str | None = None) -> User:
    if role not in ROLES:
        raise Invalid(f"Unknown role {role!r}.", errors={"role": [f"One of {', '.join(ROLES)}."]})
    if timezone is not None and timezone not in available_timezones():
        raise Invalid(f"Unknown time zone {timezone!r}.", errors={"timezone": ["An IANA name."]})
    email = normalize_email(email)
    _check_password(password)
    if db.session.scalar(select(User.id).where(User.email == email)) is not None:
        raise Conflict(f"A user with the email {email} exists already.")
    user = User(email=email, role=role, name=name, timezone=timezone,
                password_hash=hasher.hash(password))
    db.session.add(user)
    db.session.flush()
    return user


def list_users() -> Select[tuple[User]]:
    return select(User).order_by(User.id)


def get_user(user_id: int) -> User:
    return get_or_404(User, user_id, "user")


def by_email(email: str) -> User | None:
    try:
        email = normalize_email(email)
    except Invalid:
        return None
    return db.session.scalar(select(User).where(User.email == email))


def set_active(user: User, active: bool) -> User:
    user.active = active
    db.session.flush()
    return user


def set_password(user: User, password: str) -> User:
    _check_password(password)
    user.password_hash = hasher.hash(password)
    db.session.flush()
    return user


def authenticate(email: str, password: str) -> User | None:
    """The active user with this email and password, or None (the same for an unknown
    email, a wrong password and a disabled user). Records the sign-in."""
    user = by_email(email)
    try:
        hasher.verify(user.password_hash if user else _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None or not user.active:
        return None
    if hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hasher.hash(password)
    user.last_sign_in_at = utcnow()
    db.session.flush()
    return user
