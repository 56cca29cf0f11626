"""Demo data for messaging and campaigns: an NPS survey sent right after each purchase,
and a campaign that ran 60 days ago (its messages as delivered), so that its report has
purchases to attribute."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, select, update

from campaigns import campaign_settings, planner, segments, surveys
from campaigns.models import Campaign, Message, MessageEvent, Survey
from crm.db import db, utcnow
from loyalty import coupons
from loyalty.models import Offer

DEMO_SURVEY = {"name": "After your visit", "kind": "nps", "delay_hours": 0,
               "throttle_days": 90,
               "question": "How likely are you to recommend us to a friend?"}
DEMO_CAMPAIGN = "Welcome back (demo)"


def load(_keys: Any) -> None:
    if db.session.scalar(select(Survey.id).where(Survey.name == DEMO_SURVEY["name"])) is None:
        surveys.create_survey(dict(DEMO_SURVEY))
    if db.session.scalar(select(Campaign.id).where(Campaign.name == DEMO_CAMPAIGN)) is None:
        _campaign()


def _campaign() -> None:
    ran_at = utcnow() - timedelta(days=60)
    segment = segments.create_segment({"name": "Agreed to SMS (demo)", "rule": {
        "field": "consent_sms", "op": "eq", "value": True}})
    offer = db.session.scalar(select(Offer).where(Offer.name == "Demo 10% off")) or \
        coupons.create_offer({"name": "Demo 10% off", "kind": "percent",
                              "value": Decimal(10), "currency": "USD"})
    campaign = campaign_settings.create_campaign({
        "name": DEMO_CAMPAIGN, "segment_id": segment.id, "offer_id": offer.id,
        "template": "Hi {name}, {points} points are waiting. Show {coupon_code} for 10% off.",
        "schedule": {"at": ran_at.isoformat()}, "holdout_percent": 20,
        "attribution_days": 14})
    campaign_settings.activate(campaign.id, ran_at)
    planner.run(campaign, ran_at)
    db.session.execute(update(Message).where(Message.campaign_id == campaign.id)
                       .values(status="delivered", provider_status="delivered",
                               submitted_at=ran_at))
    # Their delivery history, as Twilio's status callbacks would have written it.
    events = [{"message_id": message_id, "provider_status": status, "status": status,
               "applied": True, "error_code": None,
               "created_at": ran_at + timedelta(seconds=after)}
              for message_id in db.session.scalars(select(Message.id).where(
                  Message.campaign_id == campaign.id))
              for status, after in (("sent", 4), ("delivered", 9))]
    if events:
        db.session.execute(insert(MessageEvent), events)
