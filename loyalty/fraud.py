"""Fraud rules on points (README "Security"): each counts against a threshold in config
and raises an alert one past it.

- ``points_after_contact_change``: points spent within TAKEOVER_HOURS of a change to the
  member's phone or email (the classic account takeover);
- ``store_hopping``: one member's purchases at more than STORE_HOP_LIMIT stores within
  STORE_HOP_MINUTES (a copied card or a shared phone number);
- ``cashier_returns``: a till key taking back more than CASHIER_RETURN_LIMIT sales that
  redeemed points in a day (buy, redeem, return);
- ``manual_adjustments``: a key making more than ADJUSTMENT_LIMIT manual adjustments in a day.

Counts per key live in the rate limiter's storage (memory, or Redis across nodes)."""

from __future__ import annotations

import functools
from typing import Any

from flask import Flask, current_app
from limits import RateLimitItemPerDay, RateLimitItemPerMinute

from crm import alerts, contact_changes, signals
from crm.after_response import defer
from crm.customers import find_customer, normalize_fields
from crm.db import db
from crm.errors import DomainError
from crm.limits import counters


@functools.lru_cache(maxsize=64)  # limits are settings: a few distinct values
def _per_minutes(amount: int, minutes: int) -> RateLimitItemPerMinute:
    return RateLimitItemPerMinute(amount, minutes)


def _over(rule: str, limit: int, subject: str) -> bool:
    """Count one for ``subject`` today; True once past ``limit``."""
    return not counters("hit", RateLimitItemPerDay(limit), "fraud", rule, subject)


def check_spend(ref: dict[str, Any] | None, points: int,
                customer_id: int | None = None) -> None:
    """Points about to be spent (a sale redeeming, a reward claim) by the member ``ref``
    points at (or ``customer_id``): alert when their phone or email changed within
    TAKEOVER_HOURS (crm/contact_changes.py: no database statement)."""
    if customer_id is not None:
        ref = {"id": customer_id}
    if not ref:
        return
    try:
        normal = ({"id": ref["id"]} if ref.get("id") is not None
                  else {k: v for k, v in normalize_fields(ref).items() if v})
    except DomainError:
        return  # the sale answers for a malformed identifier itself
    if not contact_changes.changed_lately(normal):
        return
    found = ref.get("id")
    if found is None:  # rare: only now is the member looked up, for the alert's subject
        member = find_customer(ref)
        found = member.id if member else None
    alerts.raise_alert("points_after_contact_change", f"customer:{found}",
                       f"{points} points spent for customer {found} within "
                       f"{current_app.config['TAKEOVER_HOURS']} h of a change to their "
                       "phone or email.")


def note_adjustment(actor: str) -> None:
    limit = current_app.config["ADJUSTMENT_LIMIT"]
    subject = ":".join(actor.split(":")[:2])  # key:<id>, never the key's name
    if _over("adjustments", limit, subject):
        alerts.raise_alert("manual_adjustments", subject,
                           f"More than {limit} manual point adjustments today by {subject}.")


def _returned(sender: Any, purchase: Any, purchase_return: Any, **_: Any) -> None:
    from flask import g

    key = g.get("api_key")
    if key is None or key.store is None or not purchase.points_redeemed:
        return
    limit = current_app.config["CASHIER_RETURN_LIMIT"]
    subject = f"key:{key.id}"
    if _over("returns", limit, subject):
        alerts.raise_alert("cashier_returns", subject,
                           f"More than {limit} returns of sales that redeemed points today "
                           f"at till key {key.id} (store {key.store.code}).")


def _recorded(sender: Any, purchase: Any, claimed: bool = False, **_: Any) -> None:
    """A member's sale: count the store once per window; past STORE_HOP_LIMIT distinct
    stores, alert. Counted in the limiter's storage, not the database, and after the
    answer: the sale's transaction (on SQLite, the write lock every till waits for) is
    not held for it."""
    if purchase.customer_id is None or claimed:
        return
    customer, store = str(purchase.customer_id), str(purchase.store_id)
    defer(lambda: _count_store(customer, store))


def _count_store(customer: str, store: str) -> None:
    config = current_app.config
    limit, minutes = config["STORE_HOP_LIMIT"], config["STORE_HOP_MINUTES"]
    first_here = counters("hit", _per_minutes(1, minutes), "hop-store", customer, store)
    if first_here and not counters("hit", _per_minutes(limit, minutes),
                                              "hop-stores", customer):
        alerts.raise_alert("store_hopping", f"customer:{customer}",
                           f"Customer {customer} bought at more than {limit} stores within "
                           f"{minutes} minutes (the latest: store {store}).")
        db.session.commit()


def init_app(app: Flask) -> None:
    signals.purchase_returned.connect(_returned, weak=False)
    signals.purchase_recorded.connect(_recorded, weak=False)
