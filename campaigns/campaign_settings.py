"""Campaigns as marketers set them up: segment, SMS template, optional offer (a personal
coupon each), schedule (once ``at``, recurring ``cron``, or a ``trigger``), holdout,
frequency cap, quiet hours, re-entry and attribution windows; activate and pause."""

from __future__ import annotations

import string
from datetime import datetime, timedelta
from typing import Any

from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import Select, select

from campaigns import date_jobs
from campaigns.models import Campaign, Segment
from crm.db import db, utcnow
from crm.errors import Conflict, Invalid, get_or_404
from loyalty.models import Offer

TEMPLATE_FIELDS = ("first_name", "last_name", "name", "points", "tier", "coupon_code",
                   "expiring_points", "recommendation", "recommended_product",
                   "recommended_products")
TRIGGERS = {"no_purchase": True, "birthday": False, "tier_changed": False,
            "points_expiring": True, "first_purchase": False}  # trigger: takes days


def template_fields(template: str) -> set[str]:
    """The personal fields a template uses; Invalid for anything else."""
    used = set()
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        raise Invalid(f"The template does not parse: {e}.",
                      errors={"template": [str(e)]}) from None
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in TEMPLATE_FIELDS or spec or conversion:
            raise Invalid(f"Unknown template field {{{name}}}: use "
                          + ", ".join("{" + f + "}" for f in TEMPLATE_FIELDS)
                          + " (write {{ and }} for braces).",
                          errors={"template": [f"Unknown field {{{name}}}."]})
        used.add(name)
    return used


def check_template(template: str, offer_id: int | None) -> set[str]:
    """The fields a template uses; Invalid for an unknown one, or {coupon_code} without
    an offer to issue the coupons of."""
    used = template_fields(template)
    if "coupon_code" in used and offer_id is None:
        raise Invalid("{coupon_code} needs an offer_id: each recipient gets a coupon of it.",
                      errors={"template": ["{coupon_code} needs offer_id."]})
    return used


def check_schedule(schedule: dict[str, Any]) -> None:
    """What the schema cannot see: a cron expression that parses, a trigger's days."""
    if "cron" in schedule:
        try:
            CronTrigger.from_crontab(schedule["cron"], timezone="UTC")
        except ValueError as e:
            raise Invalid(f"Not a cron expression: {e}.",
                          errors={"schedule.cron": [str(e)]}) from None
    if "trigger" in schedule and TRIGGERS[schedule["trigger"]] and not schedule.get("days"):
        raise Invalid(f"The {schedule['trigger']} trigger needs days.",
                      errors={"schedule.days": ["Required for this trigger."]})


def _check(data: dict[str, Any], campaign: Campaign | None) -> None:
    merged = {**({c.key: getattr(campaign, c.key) for c in Campaign.__table__.columns}
                 if campaign else {}), **data}
    if "segment_id" in data:
        get_or_404(Segment, data["segment_id"], "segment")
    if data.get("offer_id") is not None:
        get_or_404(Offer, data["offer_id"], "offer")
    check_template(merged["template"], merged.get("offer_id"))
    check_schedule(merged["schedule"])


def create_campaign(data: dict[str, Any]) -> Campaign:
    _check(data, None)
    campaign = Campaign(**data)
    db.session.add(campaign)
    db.session.flush()
    return campaign


def update_campaign(campaign_id: int, data: dict[str, Any]) -> Campaign:
    campaign = get_or_404(Campaign, campaign_id, "campaign")
    if campaign.status == "completed":
        raise Conflict("This campaign has completed; make a new one.")
    _check(data, campaign)
    for name, value in data.items():
        setattr(campaign, name, value)
    db.session.flush()
    if campaign.status == "active":
        start_on_time(campaign)
    return campaign


def start_on_time(campaign: Campaign) -> None:
    """A one-off campaign of an active campaign starts at its time (now, if that has
    passed), not at the next look of the ``run-campaigns`` job."""
    at = campaign.schedule.get("at")
    if at is not None and campaign.last_run_at is None:
        date_jobs.run_at("run-campaigns", datetime.fromisoformat(at),
                         key=f"campaign-{campaign.id}-{at}")


def list_campaigns() -> Select[tuple[Campaign]]:
    return select(Campaign).order_by(Campaign.id)


def activate(campaign_id: int, now: datetime | None = None) -> Campaign:
    campaign = get_or_404(Campaign, campaign_id, "campaign")
    if campaign.status == "completed":
        raise Conflict("This campaign has completed; make a new one.")
    if campaign.status != "active":
        campaign.status = "active"
        campaign.activated_at = now or utcnow()
    db.session.flush()
    start_on_time(campaign)
    return campaign


def pause(campaign_id: int) -> Campaign:
    campaign = get_or_404(Campaign, campaign_id, "campaign")
    if campaign.status == "completed":
        raise Conflict("This campaign has completed.")
    campaign.status = "paused"
    db.session.flush()
    return campaign


def is_due(campaign: Campaign, now: datetime) -> bool:
    """Whether an active campaign's schedule says run now."""
    schedule = campaign.schedule
    if "at" in schedule:
        return campaign.last_run_at is None and datetime.fromisoformat(schedule["at"]) <= now
    if "cron" in schedule:
        # the first fire time after the last run (or the activation)
        base = (campaign.last_run_at or campaign.activated_at or now) + timedelta(seconds=1)
        trigger = CronTrigger.from_crontab(schedule["cron"], timezone="UTC")
        fire = trigger.get_next_fire_time(None, base)
        return fire is not None and fire <= now
    return True  # triggered: every run looks for who entered since
