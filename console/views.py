"""The dashboard."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import render_template
from sqlalchemy import select

from campaigns import surveys
from campaigns.models import Survey
from console.web import bp
from crm import stats as crm_stats
from crm.db import db, utcnow
from crm.money import to_amount
from loyalty import stats

DAYS = 90


def dashboard_figures() -> dict[str, Any]:
    """Everything the dashboard shows, each figure from one aggregate query."""
    now = utcnow()
    end = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    since = end - timedelta(days=DAYS)
    sales = stats.sales_per_day(since, end)
    nps = [{"survey": s.name, **surveys.results(s.id, start=since)}
           for s in db.session.scalars(select(Survey).where(Survey.kind == "nps")
                                       .order_by(Survey.id))]
    return {
        **crm_stats.member_counts(now),
        "active_members": stats.active_members(now - timedelta(days=30)),
        "sales": sales,
        "sales_paid": [float(to_amount(d["paid"], d["currency"])) for d in sales],
        "points": stats.points_per_day(since, end),
        "tiers": stats.tier_distribution(),
        "liability": stats.liability(),
        "coupons_redeemed": stats.coupons_redeemed(since),
        "nps": [{k: n[k] for k in ("survey", "nps", "responses", "promoters", "passives",
                                   "detractors")} for n in nps],
        "days": DAYS,
    }


@bp.get("/")
def dashboard() -> Any:
    return render_template("console/dashboard.html", f=dashboard_figures())
