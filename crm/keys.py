"""API keys: made, checked, rotated and revoked here; the CLI and the HTTP API both call
these.

A key reads ``crm_<scopes>_<prefix>_<secret>`` (``crm_pos_...``, ``crm_admin_...``: the
scope in the key lets secret scanners rate a leak; keys made before, ``crm_<prefix>_...``,
keep working): the prefix finds the row, the whole key's SHA-256 is compared in
constant time. A key may expire (``expires_at``) and be limited to addresses
(``allowed_ips``, CIDRs); both are checked on every request from what is cached.

Every request presents a key, so a worker keeps what it found for a presented key (a
plain ``Caller``, not a database row) for API_KEY_CACHE_SECONDS. Every change to keys or
stores (here, on any worker or node, or by the CLI) bumps the ``api_keys`` counter in
``service_state`` in its own transaction; each request reads that counter (one
primary-key read) and a worker that sees it moved forgets every cached key first: a
revoked key stops at once on every worker and node."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import Select, event, select

from crm import audit, service_state
from crm.db import db, utcnow
from crm.errors import Invalid, get_or_404
from crm.models import SCOPES, ApiKey, Store

_KEY = re.compile(r"^crm_(?:[a-z]+(?:-[a-z]+)*_)?([a-z0-9]{12})_([A-Za-z0-9_-]{43})\Z")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def prefix_of(key: str) -> str | None:
    """The public part of a presented key, if it is shaped like one of ours."""
    match = _KEY.match(key)
    return match.group(1) if match else None


def parse_networks(cidrs: list[str] | None) -> list[str] | None:
    """Normalised CIDRs (``203.0.113.7`` is ``203.0.113.7/32``); Invalid names the bad."""
    if cidrs is None:
        return None
    found, bad = [], []
    for cidr in cidrs:
        try:
            found.append(str(ipaddress.ip_network(str(cidr).strip(), strict=False)))
        except ValueError:
            bad.append(str(cidr)[:60])
    if bad or not found or len(found) > 100:
        raise Invalid("allowed_ips is a list of 1 to 100 addresses or CIDR ranges.",
                      errors={"allowed_ips": [f"Not an address or range: {', '.join(bad)}"
                                              if bad else "1 to 100 ranges."]})
    return found


def create_key(name: str, scopes: list[str], store_code: str | None = None,
               expires_at: datetime | None = None, allowed_ips: list[str] | None = None,
               rotated_from_id: int | None = None) -> tuple[ApiKey, str]:
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
    if expires_at is not None and expires_at <= utcnow():
        raise Invalid("expires_at is in the past.", errors={"expires_at": ["In the past."]})
    prefix = secrets.token_hex(6)
    ordered = [s for s in SCOPES if s in scopes]
    key = f"crm_{'-'.join(ordered)}_{prefix}_{secrets.token_urlsafe(32)}"
    row = ApiKey(
        name=name,
        prefix=prefix,
        key_hash=_hash(key),
        scopes=" ".join(ordered),
        store=store,
        expires_at=expires_at,
        allowed_ips=parse_networks(allowed_ips),
        rotated_from_id=rotated_from_id,
    )
    db.session.add(row)
    db.session.flush()
    audit.record("create", "api_key", row.id, after=_audited(row))
    return row, key


def _audited(row: ApiKey) -> dict[str, object]:
    return {"name": row.name, "prefix": row.prefix, "scopes": row.scopes,
            "store_code": row.store_code, "expires_at": row.expires_at,
            "allowed_ips": row.allowed_ips, "revoked_at": row.revoked_at}


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
    prefix: str = ""
    expires_at: datetime | None = None
    allowed: tuple[Network, ...] | None = None  # None: any address
    networks: frozenset[str] = frozenset()  # networks it was used from, as last read

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def allows(self, address: str | None) -> bool:
        if self.allowed is None:
            return True
        try:
            ip = ipaddress.ip_address(address or "")
        except ValueError:
            return False
        return any(ip in net for net in self.allowed)


_callers: dict[str, tuple[Caller, float]] = {}  # SHA-256 of a key -> (caller, expiry)
_generation = 0  # bumped whenever the cache is cleared
_seen_counter: int | None = None  # the api_keys counter the cached callers were read under
KEYS_COUNTER = "api_keys"


def authenticate(key: str) -> Caller | None:
    """The caller presenting ``key`` if it is an active key (not revoked, not expired),
    else None. Whether it may be used from the caller's address is ``Caller.allows``."""
    global _seen_counter
    changes = service_state.peek(KEYS_COUNTER)  # read before the key's row
    if changes != _seen_counter:
        _forget()
        _seen_counter = changes
    digest = _hash(key)
    cached = _callers.get(digest)
    if cached is not None and cached[1] > time.monotonic():
        return None if cached[0].expired(utcnow()) else cached[0]
    match = _KEY.match(key)
    if not match:
        return None
    generation = _generation
    row = db.session.scalar(select(ApiKey).where(ApiKey.prefix == match.group(1)))
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.key_hash, digest):
        return None
    if row.expires_at is not None and row.expires_at <= utcnow():
        return None
    store = row.store
    caller = Caller(
        row.id, row.name, row.scope_list,
        StoreRef(store.id, store.code, store.currency, store.timezone) if store else None,
        prefix=row.prefix, expires_at=row.expires_at,
        allowed=None if row.allowed_ips is None else tuple(
            ipaddress.ip_network(c) for c in row.allowed_ips),
        networks=frozenset(row.networks or ()))
    ttl = current_app.config["API_KEY_CACHE_SECONDS"]
    if ttl > 0 and generation == _generation:  # no change committed since it was read
        if len(_callers) > 10_000:  # keys are few; never let guesses fill memory
            _callers.clear()
        _callers[digest] = (caller, time.monotonic() + ttl)
    return caller


def forget_callers() -> None:
    """Keys or stores change in this transaction: forget the cached callers now and again
    when it commits, so that a request that read the old row meanwhile cannot keep it;
    the counter bumped with the change tells every other worker and node to forget too."""
    service_state.bump(KEYS_COUNTER)
    _forget()
    event.listen(db.session(), "after_commit", _forget, once=True)


def _forget(*_: object) -> None:
    global _generation
    _generation += 1
    _callers.clear()


def list_keys(include_revoked: bool = False) -> Select[tuple[ApiKey]]:
    stmt = select(ApiKey).order_by(ApiKey.id)
    return stmt if include_revoked else stmt.where(ApiKey.revoked_at.is_(None))


def rotate_key(key_id: int, overlap_hours: float | None = None,
               expires_at: datetime | None = None) -> tuple[ApiKey, ApiKey, str]:
    """A new key for the same client (name, scopes, store, allowed addresses; it expires
    at ``expires_at`` if given); the old one keeps working for ``overlap_hours``
    (KEY_ROTATION_OVERLAP_HOURS), time enough to deploy the new one, and no longer than
    it would have. Returns the old row, the new row and the new key."""
    old = get_or_404(ApiKey, key_id, "API key")
    if old.revoked_at is not None or (old.expires_at is not None
                                      and old.expires_at <= utcnow()):
        raise Invalid("This key is revoked or expired: create a new one instead.")
    hours = (current_app.config["KEY_ROTATION_OVERLAP_HOURS"] if overlap_hours is None
             else overlap_hours)
    if not 0 <= hours <= 24 * 90:
        raise Invalid("The overlap is 0 to 2160 hours.", errors={"overlap_hours": ["0-2160."]})
    ends = utcnow() + timedelta(hours=hours)
    before = _audited(old)
    old.expires_at = ends if old.expires_at is None else min(old.expires_at, ends)
    new, key = create_key(old.name, old.scope_list, old.store_code, expires_at,
                          old.allowed_ips, rotated_from_id=old.id)
    audit.record("rotate", "api_key", old.id, before={"expires_at": before["expires_at"]},
                 after={"expires_at": old.expires_at, "replaced_by": new.id})
    forget_callers()
    return old, new, key


def revoke_key(key_id: int) -> ApiKey:
    row = get_or_404(ApiKey, key_id, "API key")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        audit.record("revoke", "api_key", row.id, after={"revoked_at": row.revoked_at})
    forget_callers()
    return row
