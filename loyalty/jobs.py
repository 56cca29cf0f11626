"""Scheduled work on points: release pending lots, expire lots, review tiers. Each job
is idempotent (a second run finds nothing left to do) and works in batches: the lots of
a batch and their accounts are read in two queries, and the unit of work writes all the
changed rows with one statement per table."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Select, select

from crm.db import db, utcnow
from loyalty import ledger, settings, tiers
from loyalty.models import Account, Lot

BATCH = 2000


def _in_batches(stmt: Select[tuple[Lot]], act: Callable[[Account, Lot], None]) -> int:
    done = 0
    while True:
        lots = list(db.session.scalars(stmt.order_by(Lot.id).limit(BATCH)))
        if not lots:
            return done
        ids = sorted({lot.customer_id for lot in lots})
        accounts = {a.customer_id: a for a in db.session.scalars(
            select(Account).where(Account.customer_id.in_(ids))
            .order_by(Account.customer_id).with_for_update())}
        for lot in lots:
            act(accounts[lot.customer_id], lot)
        db.session.flush()
        done += len(lots)


def release_pending(now: datetime | None = None) -> int:
    """Make pending points spendable once their return window has passed."""
    now = now or utcnow()
    return _in_batches(select(Lot).where(Lot.released.is_(False), Lot.pending_until <= now),
                       ledger.release)


def expire_points(now: datetime | None = None) -> int:
    """Expire what is left of lots past their expiry date."""
    now = now or utcnow()
    return _in_batches(select(Lot).where(Lot.released.is_(True), Lot.remaining > 0,
                                         Lot.expires_at <= now), ledger.expire)


def review_tiers(now: datetime | None = None) -> dict[str, int]:
    return tiers.review(settings.program(), settings.tiers(), now)
