"""API keys: made, checked and revoked here; the CLI and the HTTP API both call these.

A key reads ``crm_<prefix>_<secret>``: the prefix finds the row, the whole key's SHA-256
is compared in constant time.

Every request presents a key, so a node keeps what it found for a presented key (a plain
``Caller``, not a database row) for API_KEY_CACHE_SECONDS: a key revoked here, or a
store changed here, is seen at once; a key revoked on another node (or by the CLI) stops
working on this one within that time."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import Select, event, select

from crm.db import db, utcnow
from crm.errors import Invalid, get_or_404
from crm.models import SCOPES, ApiKey, Store

_KEY = re.compile(r"^crm_([a-z0-9]{12})_([A-Za-z0-9_-]{43})\Z")


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(name: str, scopes: list[str], store_code: str | None = None) -> tuple[ApiKey, str]:
    """Make a key; return the row and the key itself, which is never shown again."""
    name = name.strip()
    if not name or len(name) > 100:
        raise Invalid("A key needs a name of 1 to 100 characters.",
                      errors={"name": ["1 to 100 characters."]})
    unknown = sorted(set(scopes) - set(SCOPES))
    if not scopes or unknown:
        raise Invalid(f"Scopes are one or more of {', '.join(SCOPES)}.",
                      errors={"scopes": [f"Unknown or missing scope: {unknown or 'none'}."]})
    store = None
    if store_code is not None:
        store = db.session.scalar(select(Store).where(Store.code == store_code))
        if store is None:
            raise Invalid(f"No store has the code {store_code!r}.",
                          errors={"store_code": ["No such store."]})
    if "pos" in scopes and store is None:
        raise Invalid("A pos key is bound to one store: give its store code.",
                      errors={"store_code": ["Required for a pos key."]})
    prefix = secrets.token_hex(6)
    key = f"crm_{prefix}_{secrets.token_urlsafe(32)}"
    row = ApiKey(
        name=name,
        prefix=prefix,
        key_hash=_hash(key),
        scopes=" ".join(s for s in SCOPES if s in scopes),
        store=store,
    )
    db.session.add(row)
    db.session.flush()
    return row, key


@dataclass(frozen=True)
class StoreRef:
    """What a till's key tells of its store."""

    id: int
    code: str
    currency: str
    timezone: str


@dataclass(frozen=True)
class Caller:
    """An active API key, as a request sees it."""

    id: int
    name: str
    scope_list: list[str]
    store: StoreRef | None


_callers: dict[str, tuple[Caller, float]] = {}  # SHA-256 of a key -> (caller, expiry)
_generation = 0  # bumped whenever the cache is cleared


def authenticate(key: str) -> Caller | None:
    """The caller presenting ``key`` if it is an active key, else None."""
    digest = _hash(key)
    cached = _callers.get(digest)
    if cached is not None and cached[1] > time.monotonic():
        return cached[0]
    match = _KEY.match(key)
    if not match:
        return None
    generation = _generation
    row = db.session.scalar(select(ApiKey).where(ApiKey.prefix == match.group(1)))
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.key_hash, digest):
        return None
    store = row.store
    caller = Caller(row.id, row.name, row.scope_list, StoreRef(
        store.id, store.code, store.currency, store.timezone) if store else None)
    ttl = current_app.config["API_KEY_CACHE_SECONDS"]
    if ttl > 0 and generation == _generation:  # no change committed since it was read
        if len(_callers) > 10_000:  # keys are few; never let guesses fill memory
            _callers.clear()
        _callers[digest] = (caller, time.monotonic() + ttl)
    return caller


def forget_callers() -> None:
    """Keys or stores change in this transaction: forget the cached callers now and again
    when it commits, so that a request that read the old row meanwhile cannot keep it."""
    _forget()
    event.listen(db.session(), "after_commit", _forget, once=True)


def _forget(*_: object) -> None:
    global _generation
    _generation += 1
    _callers.clear()


def list_keys(include_revoked: bool = False) -> Select[tuple[ApiKey]]:
    stmt = select(ApiKey).order_by(ApiKey.id)
    return stmt if include_revoked else stmt.where(ApiKey.revoked_at.is_(None))


def revoke_key(key_id: int) -> ApiKey:
    row = get_or_404(ApiKey, key_id, "API key")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    forget_callers()
    return row
