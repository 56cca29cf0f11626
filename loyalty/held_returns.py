"""Returns posted before their sale (``held``) that stay held too long: after
HELD_RETURN_DAYS the ``expire-held-returns`` job marks them ``expired``, raises a
security alert per store of the sale (crm/alerts.py: the till refunded money that has
not been matched to a sale), logs a line of ids and counts, and the
``crm_held_returns_expired_total`` counter of /metrics grows. An expired return is still
applied if its sale arrives after all (the till refunded: the points must come back).

The counter is read from the database when /metrics is scraped, so every web worker
shows the same figure whichever process ran the job (the scheduler's, usually)."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from flask import Flask, current_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from crm import alerts, observability
from crm.db import db, utcnow
from crm.keys import Caller
from crm.models import Store
from loyalty.models import PurchaseReturn

log = logging.getLogger("loyalty.held_returns")
RULE = "held_return_expired"
LISTED = ("held", "expired", "applied")


def expire_due(now: datetime | None = None) -> int:
    """Expire the returns held longer than HELD_RETURN_DAYS; answer how many. One
    conditional UPDATE: a sale applying one of them meanwhile wins (it is no longer
    held), and a second run finds nothing."""
    now = now or utcnow()
    cutoff = now - timedelta(days=current_app.config["HELD_RETURN_DAYS"])
    expired = db.session.execute(
        update(PurchaseReturn)
        .where(PurchaseReturn.status == "held", PurchaseReturn.created_at <= cutoff)
        .values(status="expired", expired_at=now)
        .returning(PurchaseReturn.id, PurchaseReturn.store_id)
        .execution_options(synchronize_session=False)).all()
    if not expired:
        return 0
    by_store: dict[int, list[int]] = defaultdict(list)
    for return_id, store_id in expired:
        by_store[store_id].append(return_id)
    codes = dict(db.session.execute(select(Store.id, Store.code)
                                    .where(Store.id.in_(by_store))).all())
    for store_id, ids in sorted(by_store.items()):
        ids.sort()
        shown = ", ".join(map(str, ids[:50])) + (" ..." if len(ids) > 50 else "")
        alerts.raise_alert(
            RULE, f"store:{codes[store_id]}",
            f"{len(ids)} return(s) of sales at {codes[store_id]} held more than "
            f"{current_app.config['HELD_RETURN_DAYS']} days without their sale "
            f"(refunded at the till, points not taken back): return ids {shown}. "
            "GET /api/v1/returns?status=expired lists them.")
    log.warning("held returns expired without their sale", extra={"fields": {
        "expired": len(expired), "return_ids": sorted(i for i, _ in expired)[:200],
        "stores": sorted(codes.values())}})
    return len(expired)


def listed(key: Caller, status: str | None) -> Select[tuple[PurchaseReturn]]:
    """Returns by status, newest first. A till sees those of its store (sold or taken
    back there); the shop those of online stores; marketing and admin all."""
    stmt = select(PurchaseReturn).order_by(PurchaseReturn.created_at.desc(),
                                           PurchaseReturn.id.desc())
    if status is not None:
        stmt = stmt.where(PurchaseReturn.status == status)
    scopes = set(key.scope_list)
    if "admin" in scopes or "marketing" in scopes:
        return stmt
    if key.store is not None:
        return stmt.where(or_(PurchaseReturn.store_id == key.store.id,
                              PurchaseReturn.taken_store_id == key.store.id))
    online = select(Store.id).where(Store.channel == "online")
    return stmt.where(or_(PurchaseReturn.store_id.in_(online),
                          PurchaseReturn.taken_store_id.in_(online)))


def store_codes(rows: list[PurchaseReturn]) -> dict[int, str]:
    ids = {r.store_id for r in rows} | {r.taken_store_id for r in rows}
    return dict(db.session.execute(select(Store.id, Store.code)
                                   .where(Store.id.in_(ids))).all()) if ids else {}


def store_currencies(rows: list[PurchaseReturn]) -> dict[int, str]:
    ids = {r.store_id for r in rows}
    return dict(db.session.execute(select(Store.id, Store.currency)
                                   .where(Store.id.in_(ids))).all()) if ids else {}


class Metrics(Collector):
    """/metrics: returns expired so far (a counter: ``expired_at`` stays set, also when a
    late sale applies one), and those waiting now for their sale (a gauge)."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def describe(self) -> Iterator[Any]:
        yield CounterMetricFamily("crm_held_returns_expired", "Held returns that expired "
                                  "without their sale within HELD_RETURN_DAYS.")
        yield GaugeMetricFamily("crm_returns_waiting", "Returns held or expired, waiting "
                                "for their sale.", labels=["status"])

    def collect(self) -> Iterator[Any]:
        with self.app.app_context():
            try:
                expired = db.session.scalar(select(func.count()).select_from(PurchaseReturn)
                                            .where(PurchaseReturn.expired_at.is_not(None)))
                waiting = dict(db.session.execute(
                    select(PurchaseReturn.status, func.count())
                    .where(PurchaseReturn.status.in_(("held", "expired")))
                    .group_by(PurchaseReturn.status)).all())
            except SQLAlchemyError:  # /metrics still answers; /healthz says what is wrong
                log.warning("held returns not counted: the database did not answer")
                return
            finally:
                db.session.rollback()
        counter = CounterMetricFamily("crm_held_returns_expired", "Held returns that expired "
                                      "without their sale within HELD_RETURN_DAYS.")
        counter.add_metric([], expired or 0)
        yield counter
        gauge = GaugeMetricFamily("crm_returns_waiting", "Returns held or expired, waiting "
                                  "for their sale.", labels=["status"])
        for status in ("held", "expired"):
            gauge.add_metric([status], waiting.get(status, 0))
        yield gauge


def init_app(app: Flask) -> None:
    observability.add_collector(app, Metrics(app))
