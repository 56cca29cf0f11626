"""When and from where each key was last used, and the networks it is used from.

The till's sale must not pay for this: a node notes the use in memory and writes it at
most once a minute per key (KEY_USAGE_FLUSH_SECONDS), after the answer is sent, in a
transaction of its own. A key seen from a network (an IPv4 /24, an IPv6 /48) it was never
used from is written at once, and raises ``key_new_network`` unless it is the key's first
use."""

from __future__ import annotations

import functools
import ipaddress
import threading
import time
from datetime import datetime

from flask import current_app
from sqlalchemy import select, update

from crm import alerts
from crm.after_response import defer
from crm.db import db, utcnow
from crm.keys import Caller
from crm.models import ApiKey
from crm.sql import as_time

MAX_NETWORKS = 50  # kept per key, newest last
_lock = threading.Lock()
_flushed: dict[int, float] = {}  # key id -> monotonic time of its last write
_seen: dict[int, set[str]] = {}  # key id -> networks this node has written for it


@functools.lru_cache(maxsize=4096)  # a node sees few addresses: its tills and proxies
def network_of(address: str | None) -> str | None:
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return None
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def note(caller: Caller, address: str | None) -> None:
    """A request by ``caller`` from ``address``: schedule a write if one is due."""
    network = network_of(address)
    now = time.monotonic()
    every = current_app.config["KEY_USAGE_FLUSH_SECONDS"]
    with _lock:
        known = network is None or network in caller.networks \
            or network in _seen.get(caller.id, ())
        if known and now - _flushed.get(caller.id, -1e18) < every:
            return
        _flushed[caller.id] = now
        if network is not None:
            _seen.setdefault(caller.id, set()).add(network)
    at = utcnow()
    defer(lambda: _write(caller.id, at, address, network))


def _write(key_id: int, at: datetime, address: str | None, network: str | None) -> None:
    table = ApiKey.__table__
    row = db.session.execute(select(table.c.prefix, table.c.last_used_at, table.c.networks)
                             .where(table.c.id == key_id).with_for_update()).first()
    if row is None:
        return
    values: dict[str, object] = {}
    if row.last_used_at is None or as_time(row.last_used_at) < at:
        values.update(last_used_at=at, last_used_address=(address or "")[:45] or None)
    networks = list(row.networks or [])
    if network is not None and network not in networks:
        if networks:
            alerts.raise_alert("key_new_network", f"key:{key_id}",
                               f"Key {key_id} ({row.prefix}) used from {network}, a network "
                               f"it was not used from before ({len(networks)} known).")
        values["networks"] = [*networks, network][-MAX_NETWORKS:]
    if values:
        db.session.execute(update(table).where(table.c.id == key_id).values(**values))
    db.session.commit()


def forget() -> None:
    with _lock:
        _flushed.clear()
        _seen.clear()
