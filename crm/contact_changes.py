"""Which members changed their phone or email lately, for the account-takeover rule
(loyalty/fraud.py): points spent soon after such a change raise an alert.

Kept in the rate limiter's storage (memory, or Redis across nodes) for TAKEOVER_HOURS,
under the member's id and under each of their identifiers (as a keyed hash, never the
value), so that a sale naming the member by card or phone is checked without a
database statement."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import Any

from flask import current_app
from limits import RateLimitItemPerHour

from crm.limits import counters

WATCHED = ("phone", "email")


def _item() -> RateLimitItemPerHour:
    return RateLimitItemPerHour(1, current_app.config["TAKEOVER_HOURS"])


def _names(customer_id: int | None, identifiers: Iterable[tuple[str, str]]) -> list[str]:
    secret = current_app.config["SECRET_KEY"].encode()
    names = [f"id:{customer_id}"] if customer_id is not None else []
    return names + [hmac.new(secret, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()
                    for kind, value in identifiers]


def mark(customer_id: int, identifiers: Iterable[tuple[str, str]]) -> None:
    """The member's phone or email changed now; ``identifiers`` are all they hold."""
    item = _item()
    for name in _names(customer_id, identifiers):
        counters("clear", item, "contact-changed", name)
        counters("hit", item, "contact-changed", name)


def changed_lately(ref: dict[str, Any]) -> bool:
    """Whether the member ``ref`` points at (``{"id"}`` or one normalised identifier
    ``{"email"|"phone"|"card": value}``) changed their phone or email lately."""
    pairs = [(k, v) for k, v in ref.items() if k != "id" and v]
    names = _names(ref.get("id"), pairs)
    item = _item()
    return any(not counters("test", item, "contact-changed", name) for name in names)
