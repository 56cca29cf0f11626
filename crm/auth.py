"""Who is calling: ``Authorization: Bearer <key>`` is read once per request (before the
rate limiter, which counts per key), and each view states the scopes it accepts."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import g, request

from crm import intrusion, key_usage
from crm.db import db, is_sqlite, read_only
from crm.errors import DomainError, Forbidden, Unauthorized
from crm.keys import Caller, authenticate, prefix_of

F = TypeVar("F", bound=Callable[..., Any])


class TooManyFailures(DomainError):
    status, slug, title = 429, "too-many-failed-authentications", "Too many failures"


class AddressRefused(Forbidden):
    slug = "address-not-allowed"


def load_key() -> None:
    """before_request: set ``g.api_key`` to the caller's active key, or None. A key that
    does not authenticate counts against its address and prefix (crm/intrusion.py); a key
    used from outside its ``allowed_ips`` is refused here."""
    g.api_key = None
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        token = token.strip()
        with read_only():
            caller = authenticate(token)
        if is_sqlite() and db.session().in_transaction():
            # End the read now: a write transaction (and SQLite's write lock) then begins
            # at the request's first write, not for the whole request.
            db.session.commit()
        address = request.remote_addr
        if caller is None:
            if intrusion.failed(address, prefix_of(token)):
                raise TooManyFailures("Too many failed authentications from this address "
                                      "or for this key; wait and send a valid key.",
                                      retry_after=intrusion.window_seconds())
            return
        if not caller.allows(address):
            intrusion.refused_address(caller.id, caller.prefix, address)
            raise AddressRefused("This key may not be used from this address.")
        key_usage.note(caller, address)
        g.api_key = caller


def current_key() -> Caller:
    key = g.get("api_key")
    if key is None:
        raise Unauthorized(
            "Send a valid API key as 'Authorization: Bearer <key>'."
            if request.headers.get("Authorization")
            else "This endpoint needs an API key: 'Authorization: Bearer <key>'."
        )
    return key


def actor_of(key: Caller) -> str:
    """Who did it, for ledgers and audit rows: the key's id and name."""
    return f"key:{key.id}:{key.name}"[:120]


def source_of(key: Caller) -> str:
    """Where a choice came from, for consent history: the scope, and the till's store."""
    scope = key.scope_list[0]
    return f"{scope}:{key.store.code}" if key.store else scope


def require(*scopes: str) -> Callable[[F], F]:
    """Accept a key holding any of ``scopes`` (no scopes: any valid key). ``admin``
    may do everything."""

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            key = current_key()
            held = set(key.scope_list)
            if scopes and "admin" not in held and not held.intersection(scopes):
                raise Forbidden(
                    f"This needs a key with scope {' or '.join(scopes)}; "
                    f"this key has {', '.join(sorted(held))}."
                )
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator
