"""The campaign wizard's drafts: what a user typed at each step, kept as typed in a row
of their own (not the session cookie, which a 1,600-character template would outgrow),
so that Back, Next and a validation error never lose any of it. A draft becomes a
campaign (status ``draft``) at the review step, through the API's schema and service;
``payload`` turns the typed values into the API's JSON."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import JSON, ForeignKey, Index, delete
from sqlalchemy.orm import Mapped, mapped_column

from campaigns.models import Campaign
from crm.db import db, utcnow

DEFAULTS = {"name": "", "segment_id": "", "template": "", "offer_id": "",
            "schedule_kind": "at", "at": "", "cron": "", "trigger": "", "days": "",
            "holdout_percent": "10", "quiet_start": "", "quiet_end": "", "cap_count": "",
            "cap_days": "", "reentry_days": "30", "attribution_days": "14"}
# The API's error keys, as the wizard's field names.
FIELD_OF_ERROR = {"schedule": "schedule_kind", "schedule._schema": "schedule_kind",
                  "schedule.at": "at", "schedule.cron": "cron", "schedule.trigger": "trigger",
                  "schedule.days": "days", "quiet_hours": "quiet_start",
                  "quiet_hours._schema": "quiet_start", "quiet_hours.start": "quiet_start",
                  "quiet_hours.end": "quiet_end", "frequency_cap": "cap_count",
                  "frequency_cap._schema": "cap_count", "frequency_cap.count": "cap_count",
                  "frequency_cap.days": "cap_days"}


class CampaignDraft(db.Model):
    __tablename__ = "campaign_drafts"
    __table_args__ = (Index("ix_campaign_drafts_user", "user_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id"))
    values: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


def start(user_id: int, campaign: Campaign | None = None, zone: ZoneInfo | None = None
          ) -> CampaignDraft:
    """A new draft: empty (the defaults), or with an existing campaign's settings."""
    values = dict(DEFAULTS)
    if campaign is not None:
        values.update(values_of(campaign, zone or ZoneInfo("UTC")))
    draft = CampaignDraft(user_id=user_id, campaign_id=campaign.id if campaign else None,
                          values=values)
    db.session.add(draft)
    db.session.flush()
    return draft


def mine(draft_id: int, user_id: int) -> CampaignDraft | None:
    draft = db.session.get(CampaignDraft, draft_id)
    return draft if draft is not None and draft.user_id == user_id else None


def keep(draft: CampaignDraft, form: Any, names: list[str]) -> None:
    """What the step's form sent, exactly as typed (a new dict: JSON columns see only
    assignment)."""
    draft.values = {**draft.values, **{n: str(form.get(n, ""))[:2000] for n in names}}
    db.session.flush()


def forget(campaign_id: int) -> None:
    db.session.execute(delete(CampaignDraft).where(CampaignDraft.campaign_id == campaign_id))


def _number(raw: str) -> Any:
    raw = raw.strip()
    return int(raw) if raw.isdigit() else raw


def local_to_iso(raw: str, zone: ZoneInfo) -> str:
    """A datetime-local value ("2026-12-24T09:30") read in the user's zone, with its
    offset, as the API takes it; the text as typed when it is no such value (the
    schema then says what is wrong)."""
    try:
        moment = datetime.fromisoformat(raw.strip())
    except ValueError:
        return raw
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.isoformat()


def payload(values: dict[str, str], zone: ZoneInfo) -> dict[str, Any]:
    """The typed values as the API's JSON for POST /campaigns."""
    v = {**DEFAULTS, **values}
    kind = v["schedule_kind"]
    if kind == "cron":
        schedule: dict[str, Any] = {"cron": v["cron"].strip()}
    elif kind == "trigger":
        schedule = {"trigger": v["trigger"]}
        if v["days"].strip():
            schedule["days"] = _number(v["days"])
    else:
        schedule = {"at": local_to_iso(v["at"], zone)}
    data: dict[str, Any] = {
        "name": v["name"].strip(), "segment_id": _number(v["segment_id"]),
        "template": v["template"], "schedule": schedule,
        "offer_id": _number(v["offer_id"]) if v["offer_id"].strip() else None,
        "holdout_percent": _number(v["holdout_percent"]),
        "reentry_days": _number(v["reentry_days"]),
        "attribution_days": _number(v["attribution_days"]),
        "quiet_hours": None, "frequency_cap": None}
    if v["quiet_start"].strip() or v["quiet_end"].strip():
        data["quiet_hours"] = {k: v[f"quiet_{k}"].strip() for k in ("start", "end")
                               if v[f"quiet_{k}"].strip()}
    if v["cap_count"].strip() or v["cap_days"].strip():
        data["frequency_cap"] = {k: _number(v[f"cap_{k}"]) for k in ("count", "days")
                                 if v[f"cap_{k}"].strip()}
    return data


def values_of(campaign: Campaign, zone: ZoneInfo) -> dict[str, str]:
    """A campaign's settings as the wizard's fields show them."""
    schedule = campaign.schedule or {}
    at = ""
    if "at" in schedule:
        at = datetime.fromisoformat(schedule["at"]).astimezone(zone).strftime("%Y-%m-%dT%H:%M")
    quiet, cap = campaign.quiet_hours or {}, campaign.frequency_cap or {}
    kind = next((k for k in ("at", "cron", "trigger") if k in schedule), "at")
    return {"name": campaign.name, "segment_id": str(campaign.segment_id),
            "template": campaign.template,
            "offer_id": "" if campaign.offer_id is None else str(campaign.offer_id),
            "schedule_kind": kind, "at": at, "cron": schedule.get("cron", ""),
            "trigger": schedule.get("trigger", ""), "days": str(schedule.get("days", "")),
            "holdout_percent": str(campaign.holdout_percent),
            "quiet_start": quiet.get("start", ""), "quiet_end": quiet.get("end", ""),
            "cap_count": str(cap.get("count", "")), "cap_days": str(cap.get("days", "")),
            "reentry_days": str(campaign.reentry_days),
            "attribution_days": str(campaign.attribution_days)}
