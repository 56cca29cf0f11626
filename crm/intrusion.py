"""Failed authentications, counted per address and per key prefix in the rate limiter's
storage (memory, or Redis across nodes).

Past AUTH_FAILURE_LIMIT failures in AUTH_FAILURE_WINDOW_SECONDS, an address (or a key
prefix) gets 429 for every further attempt without a valid key, and an ``auth_failures``
alert is raised (in a transaction of its own: the request fails). Valid keys from that
address, such as the other tills of a store behind one router, keep working: the count
is only consulted for a key that did not authenticate."""

from __future__ import annotations

import time

from flask import current_app
from limits import RateLimitItemPerSecond

from crm import alerts
from crm.limits import counters

_alerted: dict[str, float] = {}  # subject -> when this node last raised (one write a minute)


def _limit() -> RateLimitItemPerSecond:
    config = current_app.config
    return RateLimitItemPerSecond(config["AUTH_FAILURE_LIMIT"],
                                  config["AUTH_FAILURE_WINDOW_SECONDS"])


def window_seconds() -> int:
    return int(current_app.config["AUTH_FAILURE_WINDOW_SECONDS"])


def failed(address: str | None, prefix: str | None) -> bool:
    """Count a failed authentication; True when the address or the prefix is past the
    limit (the caller answers 429)."""
    limit, over = _limit(), []
    for subject in (f"address:{address or '-'}", f"key_prefix:{prefix}" if prefix else None):
        if subject is not None and not counters("hit", limit, "auth-failure", subject):
            over.append(subject)
    now = time.monotonic()
    for subject in over:
        if now - _alerted.get(subject, -1e18) >= 60:
            _alerted[subject] = now
            alerts.raise_alert_apart(
                "auth_failures", subject,
                f"More than {limit.amount} failed authentications in "
                f"{limit.multiples} s from {subject}; further attempts get 429.")
    return bool(over)


def refused_address(key_id: int, prefix: str, address: str | None) -> None:
    """A valid key used from outside its allowed addresses: refused and alerted."""
    subject = f"key:{key_id}"
    now = time.monotonic()
    if now - _alerted.get(f"{subject}|{address}", -1e18) >= 60:
        _alerted[f"{subject}|{address}"] = now
        alerts.raise_alert_apart("key_outside_allowed_ips", subject,
                                 f"Key {key_id} ({prefix}) refused from {address}: "
                                 "outside its allowed_ips.")


def forget() -> None:
    _alerted.clear()
