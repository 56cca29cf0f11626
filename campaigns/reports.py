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

from campaigns.models import Campaign, CampaignRecipient, CampaignRecommendation, Message
from crm.db import db, plus_days
from crm.errors import get_or_404
from crm.models import ConsentEvent
from crm.money import to_amount
from loyalty import settings
from loyalty.models import CouponRedemption, Purchase, PurchaseLine

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
        select(Message.status, func.count()).where(Message.campaign_id == campaign.id,
                                                   Message.purpose == "campaign")
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
    per_person = (select(attributed.c.holdout, attributed.c.customer_id,
                         func.sum(attributed.c.net).label("revenue"))
                  .group_by(attributed.c.holdout, attributed.c.customer_id).subquery())
    rows = db.session.execute(
        select(per_person.c.holdout, func.count(), func.sum(per_person.c.revenue),
               func.sum(per_person.c.revenue * per_person.c.revenue))
        .group_by(per_person.c.holdout)).all()
    outcome = {held: (converters, revenue) for held, converters, revenue, _ in rows}
    squares = {held: int(square or 0) for held, _, _, square in rows}
    waiting = db.session.scalar(
        select(func.count()).select_from(r).join(Message, Message.id == r.message_id)
        .where(mine, r.status == "quiet", Message.status == "queued")) or 0
    currency = settings.program().currency
    raw = {name: (sizes.get(held, 0), *outcome.get(held, (0, 0)))
           for name, held in (("targeted", False), ("holdout", True))}
    groups = {name: _group(*values, currency, squares.get(held, 0))
              for (name, values), held in zip(raw.items(), (False, True), strict=True)}
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
        "recommended_products": recommended_purchases(campaign, sizes),
    }


def recommended_purchases(campaign: Campaign, sizes: dict[bool, int]) -> dict[str, Any]:
    """Purchases of the products a run recommended to each person (``{recommended_
    product(s)}``) within the attribution window, targeted against the holdout (who were
    never shown theirs): people who bought one, and lines."""
    rec = CampaignRecommendation
    window_end = plus_days(rec.created_at, campaign.attribution_days)
    bought = dict((held, (people, lines)) for held, people, lines in db.session.execute(
        select(rec.holdout, func.count(func.distinct(rec.customer_id)),
               func.count(func.distinct(PurchaseLine.id)))
        .join(Purchase, and_(Purchase.customer_id == rec.customer_id,
                             Purchase.occurred_at >= rec.created_at,
                             Purchase.occurred_at < window_end))
        .join(PurchaseLine, and_(PurchaseLine.purchase_id == Purchase.id,
                                 PurchaseLine.sku == rec.sku))
        .where(rec.campaign_id == campaign.id).group_by(rec.holdout)))
    answer = {}
    for name, held in (("targeted", False), ("holdout", True)):
        people, lines = bought.get(held, (0, 0))
        size = sizes.get(held, 0)
        answer[name] = {"buyers": people, "lines": lines,
                        "buyer_rate": people / size if size else None}
    return answer


def _group(size: int, converters: int, revenue: int | None, currency: str,
           squares: int = 0) -> dict[str, Any]:
    """A group's figures, each rate and mean with its 95% interval: Wilson's for the
    conversion rate (sound near 0 and 1, where the groups of a campaign often are), the
    normal one for the revenue per recipient (everyone counts, buyers or not)."""
    revenue = int(revenue or 0)
    low, high = wilson(converters, size)
    mean_low = mean_high = None
    if size > 1:
        mean = revenue / size
        variance = max(squares - size * mean * mean, 0.0) / (size - 1)
        half = Z95 * math.sqrt(variance / size)
        mean_low = to_amount(round(mean - half), currency)
        mean_high = to_amount(round(mean + half), currency)
    return {"recipients": size, "converters": converters,
            "conversion_rate": converters / size if size else None,
            "conversion_ci_low": low, "conversion_ci_high": high,
            "revenue": to_amount(revenue, currency),
            "revenue_per_recipient": to_amount(revenue // size, currency) if size else None,
            "revenue_per_recipient_ci_low": mean_low,
            "revenue_per_recipient_ci_high": mean_high}


def wilson(successes: int, size: int) -> tuple[float | None, float | None]:
    """The 95% Wilson score interval of a proportion (None, None for an empty group)."""
    if not size:
        return None, None
    p = successes / size
    z2 = Z95 * Z95
    centre = (p + z2 / (2 * size)) / (1 + z2 / size)
    half = Z95 * math.sqrt(p * (1 - p) / size + z2 / (4 * size * size)) / (1 + z2 / size)
    return round(max(centre - half, 0.0), 6), round(min(centre + half, 1.0), 6)


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
