"""Fraud rules on points (README "Security"): each counts against a threshold in config
and raises an alert one past it.

- ``points_after_contact_change``: points spent within TAKEOVER_HOURS of a change to the
  member's phone or email (the classic account takeover);
- ``store_hopping``: one member's purchases at more than STORE_HOP_LIMIT stores within
  STORE_HOP_MINUTES (a copied card or a shared phone number);
- ``cashier_returns``: a till key taking back more than CASHIER_RETURN_LIMIT sales that
  redeemed points in a day (buy, redeem, return);
- ``manual_adjustments``: a key making more than ADJUSTMENT_LIMIT manual adjustments in a day.

Counts per key live in the rate limiter's storage (memory, or Redis across nodes); the
stores a member bought at are read from their purchases."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Flask, current_app
from limits import RateLimitItemPerDay
from sqlalchemy import Integer, bindparam, select

from crm import alerts, contact_changes, signals
from crm.customers import find_customer, normalize_fields
from crm.db import UTCDateTime
from crm.errors import DomainError
from crm.limits import counters
from crm.sql import Result, Sql, Statement
from loyalty.models import Purchase

_P = Purchase.__table__


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


# The member's other sales' stores in the window before this one (at most one more than
# the limit is needed), on the index of a member's purchases by time.
_STORES_BEFORE = Statement(
    select(_P.c.store_id).where(
        _P.c.customer_id == bindparam("customer_id"), _P.c.id != bindparam("purchase_id"),
        _P.c.occurred_at >= bindparam("since", type_=UTCDateTime()),
        _P.c.occurred_at <= bindparam("until", type_=UTCDateTime()))
    .group_by(_P.c.store_id).limit(bindparam("enough", type_=Integer())))


def stores_before(sql: Sql, sale: Any) -> Result | None:
    """The stores of the member's other sales in the STORE_HOP_MINUTES before ``sale``,
    queued on the sale's own statements (no round trip of its own on PostgreSQL); None
    for an anonymous sale. ``check_store_hopping`` reads it."""
    if sale.customer_id is None:
        return None
    config = current_app.config
    return sql.run(_STORES_BEFORE, {
        "customer_id": sale.customer_id, "purchase_id": sale.id,
        "since": sale.occurred_at - timedelta(minutes=config["STORE_HOP_MINUTES"]),
        "until": sale.occurred_at, "enough": config["STORE_HOP_LIMIT"] + 1})


def check_store_hopping(sale: Any, before: Result | None) -> None:
    """A member's sale at a store none of their sales of the last STORE_HOP_MINUTES was
    made at, past STORE_HOP_LIMIT stores: alert. Read from the purchases themselves, so
    every worker and node sees the same sales and no Redis is needed; by the time the
    sales were made, so a till syncing late counts them too."""
    if before is None:
        return
    stores = {row[0] for row in before.all()}
    limit = current_app.config["STORE_HOP_LIMIT"]
    if sale.store_id not in stores and len(stores) + 1 > limit:
        customer, minutes = sale.customer_id, current_app.config["STORE_HOP_MINUTES"]
        alerts.raise_alert("store_hopping", f"customer:{customer}",
                           f"Customer {customer} bought at more than {limit} stores within "
                           f"{minutes} minutes (the latest: store {sale.store_id}).")


def init_app(app: Flask) -> None:
    signals.purchase_returned.connect(_returned, weak=False)
