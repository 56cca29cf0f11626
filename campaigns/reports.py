"""A campaign's report: who it reached, what happened to the messages, and whether it
worked — purchases within the attribution window by the targeted group against the
holdout, with the lift in conversion and its 95% confidence interval.

The targeted group is everyone not held out, whether or not their message could be sent
(intention to treat), so that both groups were chosen the same way.
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import and_, func, select

from campaigns.models import Campaign, CampaignRecipient, Message
from crm.db import db, plus_days
from crm.errors import get_or_404
from crm.models import ConsentEvent
from crm.money import to_amount
from loyalty import settings
from loyalty.models import CouponRedemption, Purchase

Z95 = 1.959964
SENT = ("submitted", "sent", "delivered", "read")
FAILED = ("failed", "undelivered")


def report(campaign_id: int) -> dict[str, Any]:
    campaign = get_or_404(Campaign, campaign_id, "campaign")
    r = CampaignRecipient
    mine = r.campaign_id == campaign.id
    statuses = dict(db.session.execute(select(r.status, func.count()).where(mine)
                                       .group_by(r.status)).all())
    messages = dict(db.session.execute(
        select(Message.status, func.count()).where(Message.campaign_id == campaign.id)
        .group_by(Message.status)).all())
    window_end = plus_days(r.created_at, campaign.attribution_days)
    opted_out = db.session.scalar(
        select(func.count(func.distinct(r.customer_id))).join(
            ConsentEvent, and_(ConsentEvent.customer_id == r.customer_id,
                               ConsentEvent.channel == "sms",
                               ConsentEvent.granted.is_(False),
                               ConsentEvent.created_at >= r.created_at,
                               ConsentEvent.created_at < window_end))
        .where(mine, r.holdout.is_(False))) or 0
    redeemed = db.session.scalar(
        select(func.count()).select_from(CouponRedemption)
        .join(r, r.coupon_id == CouponRedemption.coupon_id)
        .where(mine, CouponRedemption.reversed_at.is_(None))) or 0
    # People, not entries: a recurring campaign may pick one person on several runs (in
    # the same group: the holdout hash is stable), and a purchase in several of their
    # windows counts once.
    sizes = dict(db.session.execute(
        select(r.holdout, func.count(func.distinct(r.customer_id))).where(mine)
        .group_by(r.holdout)).all())
    attributed = (select(r.holdout, Purchase.id, Purchase.customer_id,
                         (Purchase.paid - Purchase.returned_paid).label("net"))
                  .join(Purchase, and_(Purchase.customer_id == r.customer_id,
                                       Purchase.occurred_at >= r.created_at,
                                       Purchase.occurred_at < window_end))
                  .where(mine).distinct().subquery())
    outcome = {held: (converters, revenue) for held, converters, revenue in db.session.execute(
        select(attributed.c.holdout, func.count(func.distinct(attributed.c.customer_id)),
               func.sum(attributed.c.net)).group_by(attributed.c.holdout))}
    waiting = db.session.scalar(
        select(func.count()).select_from(r).join(Message, Message.id == r.message_id)
        .where(mine, r.status == "quiet", Message.status == "queued")) or 0
    currency = settings.program().currency
    raw = {name: (sizes.get(held, 0), *outcome.get(held, (0, 0)))
           for name, held in (("targeted", False), ("holdout", True))}
    groups = {name: _group(*values, currency) for name, values in raw.items()}
    return {
        "campaign_id": campaign.id, "status": campaign.status,
        "entries": sum(statuses.values()),
        "last_run_at": campaign.last_run_at, "attribution_days": campaign.attribution_days,
        "audience": sum(sizes.values()), "holdout": sizes.get(True, 0),
        "targeted": sizes.get(False, 0),
        "not_sent": {k: statuses.get(k, 0) for k in ("capped", "no_consent", "no_phone")},
        "waiting_for_quiet_hours_end": waiting,
        "queued": messages.get("queued", 0) + messages.get("sending", 0)
        + messages.get("in_doubt", 0),
        "sent": sum(messages.get(s, 0) for s in SENT),
        "delivered": messages.get("delivered", 0) + messages.get("read", 0),
        "failed": sum(messages.get(s, 0) for s in FAILED),
        "skipped": messages.get("skipped", 0),
        "opted_out": opted_out, "coupons_redeemed": redeemed,
        "currency": currency, "groups": groups,
        "lift": lift(raw["targeted"], raw["holdout"], currency),
    }


def _group(size: int, converters: int, revenue: int | None, currency: str) -> dict[str, Any]:
    revenue = revenue or 0
    return {"recipients": size, "converters": converters,
            "conversion_rate": converters / size if size else None,
            "revenue": to_amount(revenue, currency),
            "revenue_per_recipient": to_amount(revenue // size, currency) if size else None}


def lift(targeted: tuple[int, int, int | None], held: tuple[int, int, int | None],
         currency: str) -> dict[str, Any]:
    """Difference in conversion rate (targeted - holdout) with a 95% Wald interval, the
    relative lift, and the revenue the campaign added (per targeted recipient, times
    the targeted group). Each group is (recipients, converters, revenue)."""
    (n1, c1, r1), (n2, c2, r2) = targeted, held
    if not n1 or not n2:
        return {"conversion_difference": None, "ci_low": None, "ci_high": None,
                "relative": None, "significant": None, "incremental_revenue": None,
                "confidence": 0.95}
    p1, p2 = c1 / n1, c2 / n2
    diff = p1 - p2
    spread = Z95 * math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    extra = ((r1 or 0) / n1 - (r2 or 0) / n2) * n1
    return {"conversion_difference": round(diff, 6), "ci_low": round(diff - spread, 6),
            "ci_high": round(diff + spread, 6),
            "relative": round(diff / p2, 6) if p2 else None,
            "significant": not (diff - spread <= 0 <= diff + spread),
            "incremental_revenue": to_amount(round(extra), currency),
            "confidence": 0.95}
