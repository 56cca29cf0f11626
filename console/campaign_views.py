"""Campaigns in the console: the list (pause, resume), the wizard (one step a screen,
its draft kept server-side so that Back and errors lose nothing), the review of exactly
who would get the message (``planner.plan``, the function a run uses), "Send a test to
me" through the outbox, and the report (``reports.report``, the API's figures) with
its table and CSV. Each view calls the API's schema and service functions."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from limits import RateLimitItemPerHour
from marshmallow import ValidationError
from sqlalchemy import select

from campaigns import campaign_settings, outbox, planner, reports, segments
from campaigns.campaign_settings import TEMPLATE_FIELDS, TRIGGERS
from campaigns.models import Campaign, Segment
from campaigns.schemas import CampaignSchema
from campaigns.sms_length import measure
from console import campaign_drafts as drafts
from console.web import actor, bp, role, user_zone, when
from crm import audit
from crm.db import db, utcnow
from crm.errors import DomainError, get_or_404
from crm.identifiers import InvalidIdentifier, normalize_phone
from crm.limits import limiter
from loyalty import coupons
from loyalty.models import Offer

SAMPLE_CODE_LENGTH = 10  # as coupons.issue_personal draws them


@dataclass(frozen=True)
class Step:
    slug: str
    title: str
    names: tuple[str, ...]  # the wizard's fields on this screen
    api: tuple[str, ...]  # the API's fields they make


STEPS = [
    Step("segment", "Audience", ("name", "segment_id"), ("name", "segment_id")),
    Step("message", "Message", ("template",), ("template",)),
    Step("offer", "Offer", ("offer_id",), ("offer_id",)),
    Step("schedule", "Schedule", ("schedule_kind", "at", "cron", "trigger", "days"),
         ("schedule",)),
    Step("delivery", "Holdout and limits",
         ("holdout_percent", "quiet_start", "quiet_end", "cap_count", "cap_days",
          "reentry_days", "attribution_days"),
         ("holdout_percent", "quiet_hours", "frequency_cap", "reentry_days",
          "attribution_days")),
]
BY_SLUG = {s.slug: s for s in STEPS}
STEP_OF_FIELD = {name: s.slug for s in STEPS for name in s.names}


def _flat(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """Marshmallow's nested errors as the wizard's field names."""
    out: dict[str, list[str]] = {}
    if isinstance(messages, dict):
        for key, value in messages.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, dict):
                out.update(_flat(value, name))
            else:
                field = drafts.FIELD_OF_ERROR.get(name, name)
                out.setdefault(field, []).extend(
                    str(m) for m in (value if isinstance(value, list) else [value]))
    else:
        out[prefix or "_schema"] = [str(m) for m in messages]
    return out


def _domain_errors(e: DomainError) -> dict[str, list[str]]:
    errors = _flat(e.extra.get("errors") or {})
    return errors or {"_schema": [e.detail]}


MISSING = {"name": "Give the campaign a name.", "segment_id": "Choose a segment.",
           "template": "Write the message."}


def validate(step: Step, values: dict[str, str]) -> dict[str, list[str]]:
    """The step's fields through the API's schema, then the service's own checks."""
    data = drafts.payload(values, user_zone())
    if step.slug == "schedule" and values.get("schedule_kind", "at") == "at" and \
            "T" not in values.get("at", ""):
        return {"at": ["Give the date and the time."]}
    try:
        CampaignSchema(only=step.api).load({k: data[k] for k in step.api})
    except ValidationError as e:
        errors = _flat(e.messages)
        for name, text in MISSING.items():  # said plainly when left empty
            if name in errors and not str(values.get(name, "")).strip():
                errors[name] = [text]
        return errors
    try:
        if step.slug == "segment":
            get_or_404(Segment, data["segment_id"], "segment")
        elif step.slug == "message":
            campaign_settings.template_fields(data["template"])
        elif step.slug == "offer":
            if data["offer_id"] is not None:
                get_or_404(Offer, data["offer_id"], "offer")
            try:
                campaign_settings.check_template(data["template"], data["offer_id"])
            except DomainError:
                return {"offer_id": ["The message uses {coupon_code}: choose the offer "
                                     "whose personal coupon each recipient gets."]}
        elif step.slug == "schedule":
            campaign_settings.check_schedule(data["schedule"])
    except DomainError as e:
        errors = _domain_errors(e)
        if "_schema" in errors and len(step.names) <= 2:
            errors = {step.names[-1]: errors.pop("_schema")}
        return errors
    return {}


def _draft(draft_id: int) -> drafts.CampaignDraft:
    draft = drafts.mine(draft_id, current_user.id)
    if draft is None:
        abort(404)
    return draft


def _sample(values: dict[str, str]) -> dict[str, Any] | None:
    """The message for a real sample member of the chosen segment, with its length."""
    segment_id = values.get("segment_id", "")
    template = values.get("template", "")
    if not segment_id.isdigit() or not template:
        return None
    try:
        used = campaign_settings.template_fields(template)
        code = coupons.random_codes(1, SAMPLE_CODE_LENGTH)[0] if "coupon_code" in used \
            else None
        sample = planner.sample_message(int(segment_id), template, utcnow(), code)
    except DomainError as e:
        return {"error": e.detail}
    if sample is None:
        return {"empty": True}
    length = measure(sample["body"])
    members = segments.count(db.session.get(Segment, int(segment_id)).rule)
    return {**sample, "length": length, "members": members, "code": code,
            "estimate": members * length.segments}


def _step_context(step: Step, draft: drafts.CampaignDraft) -> dict[str, Any]:
    values = draft.values
    extra: dict[str, Any] = {}
    if step.slug == "segment":
        extra["segments"] = db.session.scalars(segments.list_segments()).all()
        if values.get("segment_id", "").isdigit():
            segment = db.session.get(Segment, int(values["segment_id"]))
            if segment is not None:
                extra["members"] = segments.count(segment.rule)
    elif step.slug == "message":
        extra["template_fields"] = TEMPLATE_FIELDS
        extra["preview"] = _sample(values)
    elif step.slug == "offer":
        extra["offers"] = db.session.scalars(
            select(Offer).where(Offer.active.is_(True)).order_by(Offer.id)).all()
        extra["uses_coupon"] = "{coupon_code}" in values.get("template", "")
    elif step.slug == "schedule":
        extra["triggers"] = TRIGGERS
    return extra


def _render_step(step: Step, draft: drafts.CampaignDraft, errors: dict[str, list[str]],
                 status: int = 200, **extra: Any) -> Any:
    index = STEPS.index(step)
    message = "Some fields are not valid: see the messages beside them." if errors else ""
    return render_template(
        "console/campaign_wizard.html", step=step, steps=STEPS, index=index, draft=draft,
        values={**drafts.DEFAULTS, **draft.values}, errors=errors, message=message,
        zone=user_zone().key, **_step_context(step, draft), **extra), status


# -- the list ------------------------------------------------------------------------------

def schedule_text(schedule: dict[str, Any]) -> str:
    if "at" in schedule:
        return "Once, " + when(schedule["at"])
    if "cron" in schedule:
        return f"Recurring: cron {schedule['cron']} (UTC)"
    days = f", {schedule['days']} days" if schedule.get("days") else ""
    return f"Triggered: {schedule.get('trigger', '').replace('_', ' ')}{days}"


@bp.get("/campaigns")
def campaigns() -> Any:
    rows = db.session.scalars(campaign_settings.list_campaigns()).all()
    names = dict(db.session.execute(select(Segment.id, Segment.name)).all())
    return render_template("console/campaigns.html", rows=rows, segment_names=names,
                           schedule_text=schedule_text)


@bp.post("/campaigns/new")
@role("marketer")
def campaign_new() -> Any:
    draft = drafts.start(current_user.id)
    db.session.commit()
    return redirect(url_for("console.campaign_step", draft_id=draft.id, slug="segment"))


@bp.post("/campaigns/<int:campaign_id>/edit")
@role("marketer")
def campaign_edit(campaign_id: int) -> Any:
    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None:
        abort(404)
    if campaign.status == "completed":
        flash("This campaign has completed; make a new one.", "error")
        return redirect(url_for("console.campaigns"))
    draft = drafts.start(current_user.id, campaign, user_zone())
    db.session.commit()
    return redirect(url_for("console.campaign_step", draft_id=draft.id, slug="segment"))


def _status_change(campaign_id: int, change: Any, action: str, done: str) -> Any:
    try:
        campaign = change(campaign_id)
        audit.record(action, "campaign", campaign.id, after={"status": campaign.status},
                     actor=actor())
        if action == "activate":
            drafts.forget(campaign.id)
        db.session.commit()
    except DomainError as e:
        db.session.rollback()
        flash(e.detail, "error")
    else:
        flash(f"The campaign {campaign.name!r} {done}.", "ok")
    return redirect(url_for("console.campaigns"))


@bp.post("/campaigns/<int:campaign_id>/activate")
@role("marketer")
def campaign_activate(campaign_id: int) -> Any:
    return _status_change(campaign_id, campaign_settings.activate, "activate",
                          "is active")


@bp.post("/campaigns/<int:campaign_id>/pause")
@role("marketer")
def campaign_pause(campaign_id: int) -> Any:
    return _status_change(campaign_id, campaign_settings.pause, "pause", "is paused")


# -- the wizard ----------------------------------------------------------------------------

@bp.get("/campaigns/drafts/<int:draft_id>/<slug>")
@role("marketer")
def campaign_step(draft_id: int, slug: str) -> Any:
    if slug not in BY_SLUG:
        abort(404)
    return _render_step(BY_SLUG[slug], _draft(draft_id), {})


@bp.post("/campaigns/drafts/<int:draft_id>/<slug>")
@role("marketer")
def campaign_step_post(draft_id: int, slug: str) -> Any:
    """Every button of a step keeps what was typed first: Back and the step links go
    without checking; Next checks this step; the last step's Next saves the campaign
    (as a draft) and shows the review."""
    if slug not in BY_SLUG:
        abort(404)
    step, draft = BY_SLUG[slug], _draft(draft_id)
    drafts.keep(draft, request.form, list(step.names))
    db.session.commit()
    go = request.form.get("go", "next")
    index = STEPS.index(step)
    if go == "test":
        return _send_test(step, draft)
    if go.startswith("step:") and go[5:] in BY_SLUG:
        return redirect(url_for("console.campaign_step", draft_id=draft.id, slug=go[5:]))
    if go == "back":
        target = STEPS[max(index - 1, 0)].slug
        return redirect(url_for("console.campaign_step", draft_id=draft.id, slug=target))
    errors = validate(step, draft.values)
    if errors:
        return _render_step(step, draft, errors, 422)
    if index + 1 < len(STEPS):
        return redirect(url_for("console.campaign_step", draft_id=draft.id,
                                slug=STEPS[index + 1].slug))
    return _finish(draft)


def _finish(draft: drafts.CampaignDraft) -> Any:
    """Every step checked again (the draft may have been left half done), then the
    campaign created or updated through the service, as POST/PATCH /campaigns do."""
    for step in STEPS:
        errors = validate(step, draft.values)
        if errors:
            return _render_step(step, draft, errors, 422)
    data = CampaignSchema().load(drafts.payload(draft.values, user_zone()))
    try:
        if draft.campaign_id is None:
            campaign = campaign_settings.create_campaign(data)
            audit.record("create", "campaign", campaign.id, after=audit.columns(campaign),
                         actor=actor())
            draft.campaign_id = campaign.id
        else:
            campaign = db.session.get(Campaign, draft.campaign_id)
            before = audit.columns(campaign)
            campaign = campaign_settings.update_campaign(draft.campaign_id, data)
            names, old, new = audit.changes(before, audit.columns(campaign))
            if names:
                audit.record("update", "campaign", campaign.id, fields=names, before=old,
                             after=new, actor=actor())
        db.session.commit()
    except DomainError as e:
        db.session.rollback()
        errors = _domain_errors(e)
        slug = next((STEP_OF_FIELD[f] for f in errors if f in STEP_OF_FIELD), "delivery")
        return _render_step(BY_SLUG[slug], _draft(draft.id), errors, 422)
    return redirect(url_for("console.campaign_review", campaign_id=campaign.id,
                            draft=draft.id))


@bp.post("/campaigns/drafts/<int:draft_id>/preview")
@role("marketer")
def campaign_preview(draft_id: int) -> Any:
    """The live preview (htmx, as the template is typed): kept in the draft too."""
    draft = _draft(draft_id)
    drafts.keep(draft, request.form, ["template"])
    db.session.commit()
    return render_template("console/campaign_preview.html", preview=_sample(draft.values))


def _test_limit() -> RateLimitItemPerHour:
    return RateLimitItemPerHour(current_app.config.get("CONSOLE_TEST_SMS_PER_HOUR", 10))


def _send_test(step: Step, draft: drafts.CampaignDraft) -> Any:
    """A wizard step's "Send a test to me": the message as previewed for the sample
    member."""
    phone = request.form.get("test_phone", "").strip()[:40]
    errors = validate(BY_SLUG["message"], draft.values)
    sample = None if errors else _sample(draft.values)
    if not errors:
        errors, phone = _queue_test(sample, phone, draft.campaign_id, draft.id)
    if errors:
        return _render_step(step, draft, errors, 422, test_phone=phone)
    return redirect(url_for("console.campaign_step", draft_id=draft.id, slug=step.slug))


def _queue_test(sample: dict[str, Any] | None, phone: str, campaign_id: int | None,
                draft_id: int | None) -> tuple[dict[str, list[str]], str]:
    """The message rendered for the sample member, to the phone the user typed, through
    the outbox as a test (sent at once, never counted in the report). SMS cost money:
    at most CONSOLE_TEST_SMS_PER_HOUR a user. Answers the errors (none when queued) and
    the phone as normalised."""
    if sample is None or "body" not in sample:
        return {"template": ["Choose a segment with members first: the test shows the "
                             "message as one of them gets it."]}, phone
    try:
        phone = normalize_phone(phone, current_app.config["DEFAULT_REGION"])
    except InvalidIdentifier as e:
        return {"test_phone": [str(e)]}, phone
    if not limiter.limiter.hit(_test_limit(), "console-test-sms", str(current_user.id)):
        return {"test_phone": ["You have sent as many tests as an hour allows; try "
                               "again later."]}, phone
    message = outbox.queue_test(sample["body"], phone, campaign_id)
    db.session.flush()
    audit.record("send_test", "message", message.id, fields=["phone"],
                 after={"campaign_id": campaign_id, "draft_id": draft_id}, actor=actor())
    db.session.commit()
    flash(f"A test was queued to {phone} (message {message.id}); it goes out with the "
          "next run of the sender.", "ok")
    return {}, phone


# -- review --------------------------------------------------------------------------------

def review_figures(campaign: Campaign) -> dict[str, Any]:
    """Who the campaign would pick if it ran now, from the run's own ``planner.plan``,
    and how many SMS parts the messages would take."""
    now = utcnow()
    picked = planner.plan(campaign, now)
    counts = picked.counts()
    code = _code_shown(campaign)
    parts = sum(measure(planner.render(campaign.template, picked.people[i], code,
                                       picked.shown.get(i, []))).segments
                for i in picked.sending)
    return {"counted_at": now, "audience": counts.get("audience", 0),
            "holdout": counts.get("holdout", 0),
            "targeted": counts.get("audience", 0) - counts.get("holdout", 0),
            "queued": counts.get("queued", 0), "quiet": counts.get("quiet", 0),
            "no_consent": counts.get("no_consent", 0), "no_phone": counts.get("no_phone", 0),
            "capped": counts.get("capped", 0), "messages": len(picked.sending),
            "parts": parts,
            "sample": _review_sample(campaign, now)}


def _code_shown(campaign: Campaign) -> str | None:
    """What the review shows for ``{coupon_code}``: a stand-in of a real code's length."""
    used = campaign_settings.template_fields(campaign.template)
    return "X" * SAMPLE_CODE_LENGTH if "coupon_code" in used else None


def _review_sample(campaign: Campaign, now: datetime) -> dict[str, Any] | None:
    """The message as the review shows it, rendered for one real member."""
    return planner.sample_message(campaign.segment_id, campaign.template, now,
                                  _code_shown(campaign))


@bp.get("/campaigns/<int:campaign_id>/review")
def campaign_review(campaign_id: int) -> Any:
    return _review(_campaign(campaign_id), _review_draft())


@bp.post("/campaigns/<int:campaign_id>/test")
@role("marketer")
def campaign_review_test(campaign_id: int) -> Any:
    """The review step's "Send a test to me": the message as the review shows it."""
    campaign, draft = _campaign(campaign_id), _review_draft()
    errors, phone = _queue_test(_review_sample(campaign, utcnow()),
                                request.form.get("test_phone", "").strip()[:40],
                                campaign.id, draft.id if draft else None)
    if errors:
        return _review(campaign, draft, errors, phone), 422
    return redirect(url_for("console.campaign_review", campaign_id=campaign.id,
                            draft=draft.id if draft else None))


def _campaign(campaign_id: int) -> Campaign:
    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None:
        abort(404)
    return campaign


def _review_draft() -> drafts.CampaignDraft | None:
    draft_id = request.values.get("draft", "")
    return drafts.mine(int(draft_id), current_user.id) if draft_id.isdigit() else None


def _review(campaign: Campaign, draft: drafts.CampaignDraft | None,
            errors: dict[str, list[str]] | None = None, test_phone: str = "") -> str:
    segment = db.session.get(Segment, campaign.segment_id)
    offer = db.session.get(Offer, campaign.offer_id) if campaign.offer_id else None
    return render_template("console/campaign_review.html", campaign=campaign, draft=draft,
                           segment=segment, offer=offer,
                           f=None if campaign.status == "completed" else review_figures(campaign),
                           schedule_text=schedule_text(campaign.schedule),
                           errors=errors or {}, test_phone=test_phone)


# -- report --------------------------------------------------------------------------------

def _rate(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _points(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:+.1f} points"


def significance(r: dict[str, Any]) -> str:
    """The lift's interval, said in words."""
    lift = r["lift"]
    if lift["conversion_difference"] is None:
        return ("No comparison yet: both a targeted and a holdout group are needed "
                "(give the campaign a holdout percentage).")
    diff, low, high = lift["conversion_difference"], lift["ci_low"], lift["ci_high"]
    interval = f"95% interval {low * 100:+.1f} to {high * 100:+.1f} points"
    if lift["significant"] and diff > 0:
        return (f"The campaign worked: the targeted group converted {diff * 100:.1f} points "
                f"more than the holdout ({interval}); a difference this large is unlikely "
                "by chance (significant at 95%).")
    if lift["significant"]:
        return (f"The targeted group converted {-diff * 100:.1f} points less than the "
                f"holdout ({interval}): significant at 95%, the campaign did harm.")
    return (f"Not significant: the difference of {diff * 100:+.1f} points ({interval}) "
            "includes zero, so it may be chance. More recipients or a longer window "
            "would tell.")


def report_rows(r: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """The report's figures as rows (section, figure, targeted or value, holdout): the
    page's table and the CSV alike."""
    t, h, lift = r["groups"]["targeted"], r["groups"]["holdout"], r["lift"]
    cur = r["currency"]
    rows = [("Audience", "People picked", str(r["audience"]), ""),
            ("Audience", "Targeted", str(r["targeted"]), ""),
            ("Audience", "Holdout", str(r["holdout"]), ""),
            ("Audience", "Not sent: no SMS consent", str(r["not_sent"]["no_consent"]), ""),
            ("Audience", "Not sent: no phone", str(r["not_sent"]["no_phone"]), ""),
            ("Audience", "Not sent: frequency cap", str(r["not_sent"]["capped"]), ""),
            ("Audience", "Waiting for quiet hours to end",
             str(r["waiting_for_quiet_hours_end"]), "")]
    rows += [("Delivery", label, str(r[key]), "") for key, label in FUNNEL]
    rows += [("Delivery", "Skipped at send time", str(r["skipped"]), ""),
             ("Outcome", "Recipients", str(t["recipients"]), str(h["recipients"])),
             ("Outcome", "Converters", str(t["converters"]), str(h["converters"])),
             ("Outcome", "Conversion rate", _rate(t["conversion_rate"]),
              _rate(h["conversion_rate"])),
             ("Outcome", "Conversion rate, 95% interval",
              f"{_rate(t['conversion_ci_low'])} to {_rate(t['conversion_ci_high'])}",
              f"{_rate(h['conversion_ci_low'])} to {_rate(h['conversion_ci_high'])}"),
             ("Outcome", f"Revenue ({cur})", t["revenue"], h["revenue"]),
             ("Outcome", f"Revenue per recipient ({cur})",
              t["revenue_per_recipient"] or "—", h["revenue_per_recipient"] or "—"),
             ("Outcome", f"Revenue per recipient, 95% interval ({cur})",
              f"{t['revenue_per_recipient_ci_low'] or '—'} to "
              f"{t['revenue_per_recipient_ci_high'] or '—'}",
              f"{h['revenue_per_recipient_ci_low'] or '—'} to "
              f"{h['revenue_per_recipient_ci_high'] or '—'}"),
             ("Lift", "Conversion difference (targeted - holdout)",
              _points(lift["conversion_difference"]), ""),
             ("Lift", "Conversion difference, 95% interval",
              f"{_points(lift['ci_low'])} to {_points(lift['ci_high'])}", ""),
             ("Lift", "Relative lift", _rate(lift["relative"]), ""),
             ("Lift", f"Incremental revenue ({cur})", lift["incremental_revenue"] or "—", ""),
             ("Lift", "Significant at 95%", {True: "yes", False: "no"}.get(
                 lift["significant"], "—"), ""),
             ("Coupons", "Coupons redeemed", str(r["coupons_redeemed"]), "")]
    return rows


FUNNEL = [("queued", "Queued (waiting to be sent)"), ("sent", "Sent"),
          ("delivered", "Delivered"), ("failed", "Failed"), ("opted_out", "Opted out")]


def _chart_spec(r: dict[str, Any]) -> dict[str, Any]:
    t, h = r["groups"]["targeted"], r["groups"]["holdout"]

    def pct(value: float | None) -> float | None:
        return None if value is None else round(value * 100, 2)

    def amount(value: str | None) -> float | None:
        return None if value is None else float(value)

    return {
        "funnel": {"labels": [label for _, label in FUNNEL],
                   "data": [r[key] for key, _ in FUNNEL]},
        "conversion": {"labels": ["Targeted", "Holdout"], "unit": "%",
                       "data": [pct(t["conversion_rate"]), pct(h["conversion_rate"])],
                       "low": [pct(t["conversion_ci_low"]), pct(h["conversion_ci_low"])],
                       "high": [pct(t["conversion_ci_high"]), pct(h["conversion_ci_high"])]},
        "revenue": {"labels": ["Targeted", "Holdout"], "unit": r["currency"],
                    "data": [amount(t["revenue_per_recipient"]),
                             amount(h["revenue_per_recipient"])],
                    "low": [amount(t["revenue_per_recipient_ci_low"]),
                            amount(h["revenue_per_recipient_ci_low"])],
                    "high": [amount(t["revenue_per_recipient_ci_high"]),
                             amount(h["revenue_per_recipient_ci_high"])]},
    }


@bp.get("/campaigns/<int:campaign_id>/report")
def campaign_report(campaign_id: int) -> Any:
    try:
        r = reports.report(campaign_id)
    except DomainError:
        abort(404)
    campaign = db.session.get(Campaign, campaign_id)
    return render_template("console/campaign_report.html", campaign=campaign, r=r,
                           rows=report_rows(r), charts=_chart_spec(r), funnel=FUNNEL,
                           words=significance(r), rate=_rate, points=_points)


@bp.get("/campaigns/<int:campaign_id>/report.csv")
def campaign_report_csv(campaign_id: int) -> Any:
    try:
        r = reports.report(campaign_id)
    except DomainError:
        abort(404)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["section", "figure", "targeted_or_value", "holdout"])
    writer.writerows(report_rows(r))
    return Response(out.getvalue(), mimetype="text/csv", headers={
        "Content-Disposition": f"attachment; filename=campaign-{campaign_id}-report.csv"})
