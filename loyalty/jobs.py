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
        found = db.session.execute(stmt.with_only_columns(Lot.id, Lot.customer_id)
                                   .order_by(Lot.id).limit(BATCH)).all()
        if not found:
            return done
        owners = sorted({customer_id for _, customer_id in found})
        accounts = {a.customer_id: a for a in db.session.scalars(
            select(Account).where(Account.customer_id.in_(owners))
            .order_by(Account.customer_id).with_for_update()
            .execution_options(populate_existing=True))}
        # Read the lots again now that their accounts are locked: a sale or a return
        # may have changed them since (they are then skipped, or taken as they are).
        lots = list(db.session.scalars(
            stmt.where(Lot.id.in_([lot_id for lot_id, _ in found])).order_by(Lot.id)
            .execution_options(populate_existing=True)))
        for lot in lots:
            act(accounts[lot.customer_id], lot)
        db.session.flush()
        done += len(lots)
        if len(found) < BATCH:
            return done


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


def refresh_recommendations(now: datetime | None = None) -> dict[str, object]:
    from loyalty import recommendation_model  # NumPy and SciPy: only where the job runs

    return recommendation_model.refresh(now)
