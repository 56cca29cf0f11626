"""Campaign runs: who gets the message, who is held out, who is capped, in quiet hours
or without consent, and the outbox rows for the rest, all in set-based statements.

A run takes the segment's members (one SQL query, with the trigger's condition and
without anyone this campaign reached within its re-entry window), splits off the
holdout by a stable hash of (campaign, customer), loads what the template needs in a
few bulk queries, issues personal coupons in bulk, and writes recipients and messages
with executemany. Runs of one campaign are serialised (an advisory lock on PostgreSQL;
SQLite has one writer), and a run's recipients commit with it: a retried run finds
them and leaves those people out.
"""

from __future__ import annotations

import calendar
import hashlib
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import func, select, true
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.sql.elements import ColumnElement

from campaigns import date_jobs, segments
from campaigns.campaign_settings import is_due, template_fields
from campaigns.models import (
    Campaign,
    CampaignEvent,
    CampaignRecipient,
    CampaignRecommendation,
    CategoryAffinity,
    Message,
    Segment,
    message_columns,
)
from campaigns.quiet_hours import quiet_until
from campaigns.segment_rules import compile_rule
from crm.customers import phones_of
from crm.db import any_of, db, utcnow
from crm.models import Customer, CustomerIdentifier, Store
from crm.sql import allocate_ids, bulk_insert, lock
from loyalty import coupons
from loyalty import recommendations as products_for
from loyalty.models import Account, Lot, Offer, Purchase, PurchaseLine, Tier

log = logging.getLogger("campaigns.planner")
EXPIRING_DAYS = 30  # {expiring_points}: points expiring within this many days
RECOMMENDED = 3  # {recommended_products}: this many names


def run_due(now: datetime | None = None) -> dict[str, int]:
    """The campaign job: run every active campaign whose schedule says so."""
    now = now or utcnow()
    counts: Counter[str] = Counter()
    for campaign in db.session.scalars(select(Campaign).where(Campaign.status == "active")
                                       .order_by(Campaign.id)).all():
        if not is_due(campaign, now):
            continue
        try:
            with db.session.begin_nested():  # one campaign's failure is not the others'
                ran = run(campaign, now, only_if_due=True)
            if ran is not None:
                counts.update(ran)
                counts["runs"] += 1
        except Exception:  # logged with its traceback; the other campaigns go on
            log.exception("campaign %s could not run", campaign.id)
            counts["failed_runs"] += 1
    if counts["queued"]:  # the sender need not wait for its next turn
        date_jobs.run_at("send-outbox", now)
    return dict(counts)


def holdout(campaign_id: int, customer_id: int, percent: int) -> bool:
    """Stable: the same person is in or out of a campaign's holdout on every run."""
    digest = hashlib.sha256(f"{campaign_id}:{customer_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 10_000 < percent * 100


def trigger_condition(campaign: Campaign, now: datetime) -> ColumnElement[bool]:
    schedule = campaign.schedule
    trigger = schedule.get("trigger")
    since = campaign.last_run_at or campaign.activated_at or now
    if trigger == "no_purchase":
        return compile_rule({"field": "days_since_last_purchase", "op": "gte",
                             "value": schedule["days"]}, now)
    if trigger == "points_expiring":
        return compile_rule({"field": "points_expiring", "op": "gt", "value": 0,
                             "window_days": schedule["days"]}, now)
    if trigger == "birthday":  # the month in SQL (the day is sealed): the day in run()
        return Customer.birth_month.in_(sorted({d.month for d in _local_days(now)}))
    if trigger == "tier_changed":
        return Customer.id.in_(select(CampaignEvent.customer_id).where(
            CampaignEvent.kind == "tier_changed", CampaignEvent.created_at > since))
    if trigger == "first_purchase":  # recorded since (a till may post a sale late)
        return Customer.id.in_(select(Purchase.customer_id)
                               .where(Purchase.customer_id.is_not(None))
                               .group_by(Purchase.customer_id)
                               .having(func.min(Purchase.created_at) > since))
    return true()


def _zone_names() -> set[str]:
    return {*db.session.scalars(select(Store.timezone).distinct()),
            current_app.config["DEFAULT_TIMEZONE"]}


def _birthday_matches(birthday: date, today: date) -> bool:
    """Born on this day; those born on 29 February celebrate on the 28th in other years."""
    if (birthday.month, birthday.day) == (today.month, today.day):
        return True
    leap = calendar.isleap(today.year)
    return not leap and (birthday.month, birthday.day, today.month, today.day) == (2, 29, 2, 28)


def _local_days(now: datetime) -> set[date]:
    """Today's date in every zone a person may be in, and 29 February where it is 28
    February of a common year."""
    days = {now.astimezone(ZoneInfo(zone)).date() for zone in _zone_names()}
    extra = {date(2000, 2, 29) for d in days
             if (d.month, d.day) == (2, 28) and not calendar.isleap(d.year)}
    return days | extra


def _birthdays_today(ids: list[int], now: datetime) -> list[int]:
    """Of these people, those whose birthday is today in their own zone (last store's)."""
    if not ids:
        return ids
    birthdays = {c.id: c.birthday for c in db.session.scalars(
        select(Customer).where(any_of(Customer.id, ids)))}
    zones = _zones({i: {} for i in ids} | {i: {"store_id": s}
                                            for i, s in db.session.execute(_last_stores(ids))})
    return [i for i in ids
            if _birthday_matches(birthdays[i], now.astimezone(ZoneInfo(zones[i])).date())]


def audience(campaign: Campaign, now: datetime) -> list[int]:
    segment = db.session.get(Segment, campaign.segment_id)
    once = "at" in campaign.schedule
    reached = select(CampaignRecipient.customer_id).where(
        CampaignRecipient.campaign_id == campaign.id,
        true() if once else CampaignRecipient.created_at
        > now - timedelta(days=campaign.reentry_days))
    return list(db.session.scalars(
        select(Customer.id).where(segments.condition(segment.rule, now),
                                  trigger_condition(campaign, now),
                                  Customer.id.not_in(reached))
        .order_by(Customer.id)))


@dataclass
class Plan:
    """Who a run picks and what becomes of each: the review screen shows it before a
    campaign is activated, and ``run`` writes it. ``status`` is per targeted person:
    queued, quiet (sent when the quiet hours end), no_consent, no_phone or capped."""

    ids: list[int]
    held: set[int]
    status: dict[int, str]
    people: dict[int, dict[str, Any]]
    zones: dict[int, str]
    quiet: dict[int, datetime]
    shown: dict[int, list[dict[str, Any]]]

    @property
    def sending(self) -> list[int]:
        return [i for i in self.ids if self.status.get(i) in ("queued", "quiet")]

    def counts(self) -> dict[str, int]:
        counts = Counter(self.status.values())
        counts["holdout"] = len(self.held)
        counts["audience"] = len(self.ids)
        return dict(counts)


def plan(campaign: Campaign, now: datetime) -> Plan:
    """Who this campaign would pick now and why each targeted person would be sent a
    message or not: the one function behind both the console's review and a run."""
    ids = audience(campaign, now)
    if campaign.schedule.get("trigger") == "birthday":
        ids = _birthdays_today(ids, now)
    held = {i for i in ids if holdout(campaign.id, i, campaign.holdout_percent)}
    targeted = [i for i in ids if i not in held]
    used = template_fields(campaign.template)
    # What the holdout would have been shown too: the report compares their purchases.
    shown = _recommended(ids) if used & {"recommended_product", "recommended_products"} \
        else {}
    people = _people(targeted, used, now)
    recent = _recent_campaign_messages(campaign, targeted, now)
    zones = _zones(people)
    quiet = _quiet_ends(campaign, zones, now)
    cap = (campaign.frequency_cap or {}).get("count", 1 << 30)
    status: dict[int, str] = {}
    for customer_id in targeted:
        person = people.get(customer_id, {})
        if not person.get("consent_sms"):
            status[customer_id] = "no_consent"
        elif not person.get("phone"):
            status[customer_id] = "no_phone"
        elif recent.get(customer_id, 0) >= cap:
            status[customer_id] = "capped"
        else:
            status[customer_id] = "quiet" if customer_id in quiet else "queued"
    return Plan(ids, held, status, people, zones, quiet, shown)


def render(template: str, person: dict[str, Any], coupon_code: str | None,
           shown: list[dict[str, Any]]) -> str:
    """A message as a person gets it: the template with their fields."""
    return template.format_map(_fields(person, coupon_code, shown))


def sample_message(segment_id: int, template: str, now: datetime,
                   coupon_code: str | None = None) -> dict[str, Any] | None:
    """The template rendered for a real member of the segment (the first who could be
    sent it, else the first member), as ``run`` renders it; None for an empty segment.
    ``coupon_code`` stands in for the personal code each recipient gets."""
    segment = db.session.get(Segment, segment_id)
    if segment is None:
        return None
    members = select(Customer.id).where(segments.condition(segment.rule, now))
    has_phone = select(CustomerIdentifier.id).where(
        CustomerIdentifier.customer_id == Customer.id,
        CustomerIdentifier.kind == "phone").exists()
    customer_id = db.session.scalar(
        members.where(Customer.consent_sms.is_(True), has_phone).order_by(Customer.id)
        .limit(1)) or db.session.scalar(members.order_by(Customer.id).limit(1))
    if customer_id is None:
        return None
    used = template_fields(template)
    person = _people([customer_id], used, now)[customer_id]
    shown = _recommended([customer_id]) if used & {"recommended_product",
                                                   "recommended_products"} else {}
    return {"customer_id": customer_id, "first_name": person.get("first_name"),
            "last_name": person.get("last_name"),
            "body": render(template, person, coupon_code, shown.get(customer_id, []))}


def run(campaign: Campaign, now: datetime | None = None, only_if_due: bool = False
        ) -> dict[str, int] | None:
    """One run of a campaign (the caller commits). With ``only_if_due``, None when,
    once its lock is held, it is no longer due: a run that held the lock first (the job
    run early by a date job and on time by its interval) has just done it."""
    now = now or utcnow()
    lock(f"campaign:{campaign.id}")
    db.session.refresh(campaign)
    if only_if_due and (campaign.status != "active" or not is_due(campaign, now)):
        return None
    picked = plan(campaign, now)
    campaign.last_run_at = now
    if "at" in campaign.schedule:
        campaign.status = "completed"
    ids, held_set, status, people = picked.ids, picked.held, picked.status, picked.people
    zones, quiet, shown = picked.zones, picked.quiet, picked.shown
    window = campaign.quiet_hours or {}
    sending = picked.sending
    coupon_of: dict[int, tuple[int, str]] = {}
    if campaign.offer_id is not None and sending:
        offer = db.session.get(Offer, campaign.offer_id)
        coupon_of = coupons.issue_personal(offer, sending)
    message_ids = dict(zip(sending, allocate_ids(Message.__table__, len(sending)), strict=True))
    bulk_insert(Message.__table__, [
        {"id": message_ids[i], "customer_id": i, "store_id": people[i].get("store_id"),
         "campaign_id": campaign.id,
         **message_columns(message_ids[i], people[i]["phone"], render(
             campaign.template, people[i], (coupon_of.get(i) or (0, None))[1],
             shown.get(i, []))),
         "purpose": "campaign", "status": "queued", "attempts": 0,
         "next_attempt_at": quiet.get(i, now), "created_at": now, "updated_at": now,
         "quiet_start": window.get("start"), "quiet_end": window.get("end"),
         "quiet_zone": zones[i] if window else None}
        for i in sending])
    bulk_insert(CampaignRecipient.__table__, [
        {"campaign_id": campaign.id, "customer_id": i, "holdout": i in held_set,
         "status": "holdout" if i in held_set else status[i],
         "message_id": message_ids.get(i), "coupon_id": (coupon_of.get(i) or (None,))[0],
         "created_at": now} for i in ids])
    bulk_insert(CampaignRecommendation.__table__, [
        {"campaign_id": campaign.id, "customer_id": i, "holdout": i in held_set,
         "sku": item["sku"], "created_at": now} for i in ids for item in shown.get(i, [])])
    return picked.counts()


def _recent_campaign_messages(campaign: Campaign, ids: list[int], now: datetime
                              ) -> dict[int, int]:
    """Campaign messages each person got within the cap's window, across campaigns."""
    cap = campaign.frequency_cap
    if not cap or not ids:
        return {}
    return dict(db.session.execute(
        select(Message.customer_id, func.count())
        .where(any_of(Message.customer_id, ids), Message.purpose == "campaign",
               Message.created_at > now - timedelta(days=cap["days"]),
               Message.status.not_in(("skipped", "canceled", "failed")))
        .group_by(Message.customer_id)).all())


def _zones(people: dict[int, dict[str, Any]]) -> dict[int, str]:
    """Each person's time zone: their last store's, else DEFAULT_TIMEZONE."""
    zones = dict(db.session.execute(select(Store.id, Store.timezone)).all())
    default = current_app.config["DEFAULT_TIMEZONE"]
    return {i: zones.get(person.get("store_id"), default) for i, person in people.items()}


def _quiet_ends(campaign: Campaign, zones: dict[int, str], now: datetime
                ) -> dict[int, datetime]:
    """For people in the campaign's quiet hours now (in their zone), when those end:
    their message waits until then (and the sender checks again when it is due)."""
    window = campaign.quiet_hours
    if not window:
        return {}
    ends = {zone: quiet_until(now, zone, window["start"], window["end"])
            for zone in set(zones.values())}
    return {i: ends[zone] for i, zone in zones.items() if ends[zone] is not None}


def _recommended(ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Up to RECOMMENDED products per person, from their history, in their last store's
    currency, else that store's best sellers (loyalty's model, in bulk)."""
    if not ids:
        return {}
    stores = {store.id: store for store in db.session.scalars(select(Store))}
    last = dict(db.session.execute(_last_stores(ids)).all())
    return products_for.for_customers(ids, RECOMMENDED,
                                      {i: stores.get(last.get(i)) for i in ids})


def _fields(person: dict[str, Any], coupon_code: str | None,
            shown: list[dict[str, Any]]) -> dict[str, Any]:
    return {"recommended_product": shown[0]["name"] if shown else "",
            "recommended_products": ", ".join(item["name"] for item in shown),
            "first_name": person.get("first_name") or "",
            "last_name": person.get("last_name") or "",
            "name": person.get("first_name") or "there",
            "points": person.get("points", 0), "tier": person.get("tier") or "",
            "expiring_points": person.get("expiring_points", 0),
            "recommendation": person.get("recommendation") or "",
            "coupon_code": coupon_code or ""}


def _people(ids: list[int], used: set[str], now: datetime) -> dict[int, dict[str, Any]]:
    """What sending and the template need, per person, in a few bulk queries."""
    if not ids:
        return {}
    people = {row.id: {"first_name": row.first_name, "last_name": row.last_name,
                       "consent_sms": row.consent_sms}
              for row in db.session.execute(
                  select(Customer.id, Customer.first_name, Customer.last_name,
                         Customer.consent_sms).where(any_of(Customer.id, ids)))}
    for customer_id, phone in phones_of(ids).items():
        people[customer_id]["phone"] = phone
    for customer_id, store_id in db.session.execute(_last_stores(ids)):
        people[customer_id]["store_id"] = store_id
    if used & {"points", "tier"}:
        for customer_id, balance, tier in db.session.execute(
                select(Account.customer_id, Account.balance, Tier.name)
                .outerjoin(Tier, Tier.id == Account.tier_id)
                .where(any_of(Account.customer_id, ids))):
            people[customer_id].update(points=balance, tier=tier)
    if "expiring_points" in used:
        for customer_id, points in db.session.execute(
                select(Lot.customer_id, func.sum(Lot.remaining))
                .where(any_of(Lot.customer_id, ids), Lot.released.is_(True), Lot.remaining > 0,
                       Lot.expires_at > now,
                       Lot.expires_at <= now + timedelta(days=EXPIRING_DAYS))
                .group_by(Lot.customer_id)):
            people[customer_id]["expiring_points"] = points
    if "recommendation" in used:
        for customer_id, category in recommendations(ids, now).items():
            people[customer_id]["recommendation"] = category
    return people


def _last_stores(ids: list[int]) -> Any:
    """(customer, store of their latest purchase): DISTINCT ON over the (customer, time)
    index on PostgreSQL; the newest purchase id per customer on SQLite."""
    if db.engine.dialect.name == "postgresql":
        return (select(Purchase.customer_id, Purchase.store_id)
                .where(any_of(Purchase.customer_id, ids))
                .order_by(Purchase.customer_id, Purchase.occurred_at.desc())
                .ext(distinct_on(Purchase.customer_id)))
    latest = (select(func.max(Purchase.id)).where(any_of(Purchase.customer_id, ids))
              .group_by(Purchase.customer_id))
    return select(Purchase.customer_id, Purchase.store_id).where(Purchase.id.in_(latest))


def recommendations(ids: list[int], now: datetime) -> dict[int, str]:
    """Per person, the category most bought by people who bought what they bought (the
    co-purchase counts of the refresh-insights job), among those they have not bought;
    for someone with no history, the category most bought with others."""
    bought: dict[int, set[str]] = {}
    for customer_id, category in db.session.execute(
            select(Purchase.customer_id, PurchaseLine.category).distinct()
            .join(PurchaseLine, PurchaseLine.purchase_id == Purchase.id)
            .where(any_of(Purchase.customer_id, ids), PurchaseLine.category.is_not(None),
                   Purchase.occurred_at >= now - timedelta(days=segments.RFM_DAYS))):
        bought.setdefault(customer_id, set()).add(category)
    affinity: dict[str, list[tuple[int, str]]] = {}
    popularity: Counter[str] = Counter()
    for category, other, customers in db.session.execute(
            select(CategoryAffinity.category, CategoryAffinity.other,
                   CategoryAffinity.customers)):
        affinity.setdefault(category, []).append((customers, other))
        popularity[other] += customers
    fallback = popularity.most_common(1)[0][0] if popularity else ""
    chosen: dict[int, str] = {}
    for customer_id in ids:
        mine = bought.get(customer_id, set())
        scores: Counter[str] = Counter()
        for category in mine:
            for customers, other in affinity.get(category, ()):
                if other not in mine:
                    scores[other] += customers
        best = min(scores.items(), key=lambda item: (-item[1], item[0]))[0] if scores \
            else fallback
        chosen[customer_id] = best
    return chosen


def on_tier_changed(_sender: Any, *, customer_id: int, **_: Any) -> None:
    """tier_changed: kept for campaigns triggered by it."""
    db.session.add(CampaignEvent(kind="tier_changed", customer_id=customer_id))

