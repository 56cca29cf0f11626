"""Scheduled work on points: release pending lots, expire lots, review tiers. Each job
is idempotent (a second run finds nothing left to do) and works in batches through the
account store: the due lots of a batch are found, their accounts locked and the lots
read again (a sale or a return may have changed them meanwhile), and what the rules did
is saved in a few statements."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Select, select

from crm.db import db, utcnow
from crm.sql import Sql
from loyalty import accounts, ledger, settings, tiers
from loyalty.ledger import Account, Lot
from loyalty.models import Lot as LotRow

BATCH = 2000


def _in_batches(due: Select[tuple[LotRow]], act: Callable[[Account, Lot], bool]) -> int:
    done = 0
    while True:
        found = db.session.execute(due.with_only_columns(LotRow.id, LotRow.customer_id)
                                   .order_by(LotRow.id).limit(BATCH)).all()
        if not found:
            return done
        with Sql() as sql:
            locked = accounts.load_many(sql, {cid for _, cid in found},
                                        lot_ids=[lot_id for lot_id, _ in found])
            for account in locked.values():
                done += sum(act(account, lot) for lot in list(account.lots))
            accounts.save(sql, *locked.values())
        if len(found) < BATCH:
            return done


def release_pending(now: datetime | None = None) -> int:
    """Make pending points spendable once their return window has passed."""
    now = now or utcnow()

    def release(account: Account, lot: Lot) -> bool:
        due = not lot.released and lot.pending_until is not None and lot.pending_until <= now
        if due:
            ledger.release(account, lot)
        return due

    return _in_batches(select(LotRow).where(LotRow.released.is_(False),
                                            LotRow.pending_until <= now), release)


def expire_points(now: datetime | None = None) -> int:
    """Expire what is left of lots past their expiry date."""
    now = now or utcnow()

    def expire(account: Account, lot: Lot) -> bool:
        due = (lot.released and lot.remaining > 0 and lot.expires_at is not None
               and lot.expires_at <= now)
        if due:
            ledger.expire(account, lot)
        return due

    return _in_batches(select(LotRow).where(LotRow.released.is_(True), LotRow.remaining > 0,
                                            LotRow.expires_at <= now), expire)


def expire_held_returns(now: datetime | None = None) -> int:
    """Returns held longer than HELD_RETURN_DAYS without their sale: expired, alerted."""
    from loyalty import held_returns

    return held_returns.expire_due(now)


def review_tiers(now: datetime | None = None) -> dict[str, int]:
    return tiers.review(settings.program(), settings.tiers(), now)


def refresh_recommendations(now: datetime | None = None) -> dict[str, object]:
    from loyalty import recommendation_model  # NumPy and SciPy: only where the job runs

    return recommendation_model.refresh(now)
