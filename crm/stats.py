"""Counts for the marketers' dashboard, in SQL."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, cast, func, literal_column, select

from crm.db import db
from crm.models import Customer


def day_of(column: Any) -> Any:
    """The UTC day (``YYYY-MM-DD`` text) of a UTCDateTime column, on both databases."""
    if db.engine.dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", column), literal_column("'YYYY-MM-DD'"))
    # Literal arguments: GROUP BY then names the same expression as the SELECT.
    return func.substr(column, literal_column("1"), literal_column("10"))


def member_counts(now: datetime, days: int = 30) -> dict[str, int]:
    """Members (records neither merged away nor erased) and those new in ``days``."""
    since = now - timedelta(days=days)
    live = (Customer.merged_into_id.is_(None), Customer.erased_at.is_(None))
    total, new = db.session.execute(select(
        func.count(),
        func.coalesce(func.sum(cast(Customer.created_at >= since, Integer)), 0),
    ).where(*live)).one()
    return {"members": total, "new_members": new}
