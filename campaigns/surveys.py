"""Satisfaction surveys: NPS (0-10) and CSAT (1-5).

A recorded purchase of a known customer schedules an invitation per active survey,
due ``delay_hours`` after the sale. The dispatch job turns due invitations into SMS
(a question to answer by reply, and a link to a page with a signed, expiring,
single-use token), unless the person has no SMS consent or phone, or was invited to a
survey within ``throttle_days``: such an invitation is dropped, not delayed (as
Delighted does). Results: NPS = % promoters (9-10) - % detractors (0-6); CSAT = % of
4-5 answers; both rounded half up to a whole number.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import Select, case, func, select

from campaigns import date_jobs, hook_events, outbox
from campaigns.models import Survey, SurveyInvitation, SurveyResponse
from crm import audit
from crm.customers import phones_of
from crm.db import db, insert_ignoring_conflicts, utcnow
from crm.errors import Conflict, DomainError, Invalid, NotFound, get_or_404
from crm.models import Customer, Store
from crm.stats import day_of

SCALES = {"nps": (0, 10), "csat": (1, 5)}
# (promoter from, detractor up to) per kind; for CSAT: satisfied 4-5, dissatisfied 1-2.
BANDS = {"nps": (9, 6), "csat": (4, 2)}
OLDEST_PURCHASE = timedelta(days=7)  # a sale synced later than this gets no survey
BATCH = 1000
_REPLY = re.compile(r"\s*(\d{1,2})(?!\d)(?![.,]\d)\s*[-,.:;!)]*\s*(.*)", re.DOTALL)


class Gone(DomainError):
    status, slug, title = 410, "gone", "No longer open"


# -- marketers' settings ---------------------------------------------------------------

@dataclass(frozen=True)
class _Active:
    surveys: tuple[tuple[int, int], ...]  # (id, delay_hours)
    taken_at: float


_active: _Active | None = None


def active_surveys() -> tuple[tuple[int, int], ...]:
    """Active purchase surveys, cached like the loyalty settings (no query per sale)."""
    global _active
    ttl = current_app.config["SETTINGS_CACHE_SECONDS"]
    if _active is None or time.monotonic() - _active.taken_at >= ttl:
        rows = db.session.execute(select(Survey.id, Survey.delay_hours).where(
            Survey.active, Survey.trigger == "purchase").order_by(Survey.id)).all()
        _active = _Active(tuple((row.id, row.delay_hours) for row in rows), time.monotonic())
    return _active.surveys


def forget() -> None:
    global _active
    _active = None


def create_survey(data: dict[str, Any], actor: str | None = None) -> Survey:
    """A new survey, recorded in the audit log (``actor``: who, else the caller's key)."""
    survey = Survey(**data)
    db.session.add(survey)
    db.session.flush()
    audit.record("create", "survey", survey.id, after=audit.columns(survey), actor=actor)
    forget()
    return survey


def update_survey(survey_id: int, data: dict[str, Any], actor: str | None = None) -> Survey:
    survey = get_or_404(Survey, survey_id, "survey")
    if "kind" in data and data["kind"] != survey.kind and _has_answers(survey.id):
        raise Conflict("This survey has answers on its scale: its kind cannot change.")
    before = audit.columns(survey)
    for name, value in data.items():
        setattr(survey, name, value)
    db.session.flush()
    names, old, new = audit.changes(before, audit.columns(survey))
    if names:
        audit.record("update", "survey", survey.id, fields=names, before=old, after=new,
                     actor=actor)
    forget()
    return survey


def _has_answers(survey_id: int) -> bool:
    return db.session.scalar(select(SurveyResponse.id).where(
        SurveyResponse.survey_id == survey_id).limit(1)) is not None


def list_surveys() -> Select[tuple[Survey]]:
    return select(Survey).order_by(Survey.id)


# -- invitations -----------------------------------------------------------------------

def on_purchase(_sender: Any, purchase: Any, **_: Any) -> None:
    """purchase_recorded: schedule an invitation per active survey (one per purchase and
    survey, also when the purchase is claimed later)."""
    if purchase.customer_id is None:
        return
    surveys = active_surveys()
    if not surveys or purchase.occurred_at < utcnow() - OLDEST_PURCHASE:
        return
    now = utcnow()
    db.session.execute(
        insert_ignoring_conflicts(SurveyInvitation.__table__, "survey_id", "purchase_id"),
        [{"survey_id": survey_id, "customer_id": purchase.customer_id,
          "purchase_id": purchase.id, "store_id": purchase.store_id, "status": "scheduled",
          "due_at": purchase.occurred_at + timedelta(hours=delay), "created_at": now}
         for survey_id, delay in surveys])
    # An invitation due before the dispatch job's next turn (delay_hours 0) goes out on
    # time: a date job, one per second however many sales that second has.
    soonest = purchase.occurred_at + timedelta(hours=min(delay for _, delay in surveys))
    if soonest < now + timedelta(seconds=current_app.config["SURVEY_DISPATCH_SECONDS"]):
        date_jobs.run_at("dispatch-surveys", soonest)


def dispatch(now: datetime | None = None) -> dict[str, int]:
    """Turn due invitations into SMS, or drop them (no consent, no phone, throttled).
    Works in batches: each reads invitations, their customers and recent invitations in
    three queries; the unit of work writes the rest."""
    now = now or utcnow()
    counts = {"invited": 0, "throttled": 0, "no_consent": 0, "no_phone": 0}
    while True:
        due = list(db.session.scalars(
            select(SurveyInvitation).where(SurveyInvitation.status == "scheduled",
                                           SurveyInvitation.due_at <= now)
            .order_by(SurveyInvitation.due_at, SurveyInvitation.id).limit(BATCH)
            .with_for_update(of=SurveyInvitation)))
        if not due:
            if counts["invited"]:  # the sender need not wait for its next turn
                date_jobs.run_at("send-outbox", now)
            return counts
        people = {inv.customer_id for inv in due}
        customers = {c.id: c for c in db.session.scalars(
            select(Customer).where(Customer.id.in_(people)))}
        phones = phones_of(list(people))
        last_invited = dict(db.session.execute(
            select(SurveyInvitation.customer_id, func.max(SurveyInvitation.invited_at))
            .where(SurveyInvitation.customer_id.in_(people),
                   SurveyInvitation.invited_at.is_not(None))
            .group_by(SurveyInvitation.customer_id)).all())
        for inv in due:
            status = _invite(inv, customers.get(inv.customer_id),
                             phones.get(inv.customer_id), last_invited, now)
            counts[status] += 1
        db.session.flush()


def _invite(inv: SurveyInvitation, customer: Customer | None, phone: str | None,
            last_invited: dict[int, datetime], now: datetime) -> str:
    survey = inv.survey
    previous = last_invited.get(inv.customer_id)
    if customer is None or not customer.consent_sms or customer.merged_into_id:
        inv.status = "no_consent"
    elif not phone:
        inv.status = "no_phone"
    elif previous is not None and previous > now - timedelta(days=survey.throttle_days):
        inv.status = "throttled"
    else:
        inv.status = "invited"
        inv.invited_at = now
        inv.expires_at = now + timedelta(days=current_app.config["SURVEY_ANSWER_DAYS"])
        inv.message = outbox.queue(customer, invitation_text(survey, inv), "survey",
                                   to=phone, store_id=inv.store_id)
        last_invited[inv.customer_id] = now
    return inv.status


def invitation_text(survey: Survey, inv: SurveyInvitation) -> str:
    low, high = SCALES[survey.kind]
    base = current_app.config["PUBLIC_BASE_URL"].rstrip("/")
    return (f"{survey.question} Reply with a number from {low} to {high} (and a comment if "
            f"you like), or answer at {base}/s/{token_for(inv.id)} . Reply STOP to opt out.")


# -- tokens ----------------------------------------------------------------------------

def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="survey-invitation")


def token_for(invitation_id: int) -> str:
    return _serializer().dumps(invitation_id)


def invitation_for(token: str) -> SurveyInvitation:
    """The open invitation a link names: NotFound for a forged or mangled token, Gone
    when it expired or was answered already."""
    max_age = current_app.config["SURVEY_ANSWER_DAYS"] * 86400
    try:
        invitation_id = _serializer().loads(token, max_age=max_age)
    except SignatureExpired:
        raise Gone("This survey link has expired.") from None
    except BadSignature:
        raise NotFound("This survey link is not valid.") from None
    valid_id = isinstance(invitation_id, int) and 0 < invitation_id < 2**63
    inv = db.session.get(SurveyInvitation, invitation_id) if valid_id else None
    if inv is None or inv.status not in ("invited", "answered"):
        raise NotFound("This survey link is not valid.")
    _still_open(inv)
    return inv


def _still_open(inv: SurveyInvitation) -> None:
    if inv.status == "answered":
        raise Gone("This survey has been answered already. Thank you!")
    if inv.expires_at is not None and inv.expires_at <= utcnow():
        raise Gone("This survey has closed.")


# -- answers ---------------------------------------------------------------------------

def answer(invitation_id: int, score: Any, comment: str | None, channel: str
           ) -> SurveyResponse:
    """Record the one answer an invitation allows (the invitation row is locked)."""
    inv = db.session.scalar(select(SurveyInvitation)
                            .where(SurveyInvitation.id == invitation_id)
                            .with_for_update(of=SurveyInvitation)
                            .execution_options(populate_existing=True))
    if inv is None:
        raise NotFound("No such survey invitation.")
    _still_open(inv)
    low, high = SCALES[inv.survey.kind]
    if not isinstance(score, int) or isinstance(score, bool) or not low <= score <= high:
        raise Invalid(f"The answer is a whole number from {low} to {high}.",
                      errors={"score": [f"A whole number from {low} to {high}."]})
    comment = (comment or "").strip()[:2000] or None
    response = SurveyResponse(invitation_id=inv.id, survey_id=inv.survey_id,
                              customer_id=inv.customer_id, store_id=inv.store_id,
                              score=score, comment=comment, channel=channel)
    inv.status = "answered"
    db.session.add(response)
    db.session.flush()
    hook_events.survey_answered(response)
    return response


def open_invitation(customer_id: int) -> SurveyInvitation | None:
    """The newest invitation this person may still answer by SMS reply."""
    return db.session.scalar(
        select(SurveyInvitation)
        .where(SurveyInvitation.customer_id == customer_id,
               SurveyInvitation.status == "invited", SurveyInvitation.expires_at > utcnow())
        .order_by(SurveyInvitation.invited_at.desc(), SurveyInvitation.id.desc()).limit(1))


def answer_by_sms(customer_id: int, text: str) -> str | None:
    """A reply that answers an open survey: the reply to send back, or None when the
    text is not about a survey (no open invitation)."""
    inv = open_invitation(customer_id)
    if inv is None:
        return None
    low, high = SCALES[inv.survey.kind]
    found = _REPLY.fullmatch(text)
    if not found or not low <= int(found.group(1)) <= high:
        return f"Please reply with a number from {low} to {high}."
    answer(inv.id, int(found.group(1)), found.group(2), "sms")
    return "Thank you for your answer!"


# -- results ---------------------------------------------------------------------------

def _percent(part: int, whole: int) -> int | None:
    if not whole:
        return None
    return int((Decimal(100 * part) / whole).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _score(kind: str, promoters: int, detractors: int, total: int) -> int | None:
    if not total:
        return None
    if kind == "nps":
        return _percent(promoters - detractors, total)
    return _percent(promoters, total)


def results(survey_id: int, store: str | None = None, start: datetime | None = None,
            end: datetime | None = None) -> dict[str, Any]:
    survey = get_or_404(Survey, survey_id, "survey")
    high, low = BANDS[survey.kind]
    where = [SurveyResponse.survey_id == survey.id]
    invited_where = [SurveyInvitation.survey_id == survey.id,
                     SurveyInvitation.status.in_(("invited", "answered"))]
    if store is not None:
        where.append(Store.code == store)
        invited_where.append(Store.code == store)
    if start is not None:
        where.append(SurveyResponse.created_at >= start)
        invited_where.append(SurveyInvitation.invited_at >= start)
    if end is not None:
        where.append(SurveyResponse.created_at < end)
        invited_where.append(SurveyInvitation.invited_at < end)
    promoter = func.sum(case((SurveyResponse.score >= high, 1), else_=0))
    detractor = func.sum(case((SurveyResponse.score <= low, 1), else_=0))
    rows = db.session.execute(
        select(Store.code, func.count(), promoter, detractor)
        .join(Store, Store.id == SurveyResponse.store_id).where(*where)
        .group_by(Store.code).order_by(Store.code)).all()
    total = sum(r[1] for r in rows)
    promoters = sum(r[2] for r in rows)
    detractors = sum(r[3] for r in rows)
    invited = db.session.scalar(
        select(func.count()).select_from(SurveyInvitation)
        .join(Store, Store.id == SurveyInvitation.store_id).where(*invited_where))
    comments = db.session.execute(
        select(SurveyResponse, Store.code.label("store"))
        .join(Store, Store.id == SurveyResponse.store_id)
        .where(*where, SurveyResponse.comment_sealed.is_not(None))
        .order_by(SurveyResponse.created_at.desc(), SurveyResponse.id.desc()).limit(100)
    ).all()
    return {
        "survey_id": survey.id, "kind": survey.kind, "responses": total,
        "invited": invited, "response_rate": _percent(total, invited),
        survey.kind: _score(survey.kind, promoters, detractors, total),
        "promoters": promoters, "passives": total - promoters - detractors,
        "detractors": detractors,
        "by_store": [{"store": code, "responses": n, "promoters": p, "passives": n - p - d,
                      "detractors": d, survey.kind: _score(survey.kind, p, d, n)}
                     for code, n, p, d in rows],
        "comments": [{"score": r.score, "comment": r.comment, "created_at": r.created_at,
                      "customer_id": r.customer_id, "channel": r.channel, "store": store}
                     for r, store in comments],
    }


def _answers_where(survey: Survey, store: str | None, start: datetime | None,
                   end: datetime | None) -> list[Any]:
    where: list[Any] = [SurveyResponse.survey_id == survey.id]
    if store is not None:
        where.append(SurveyResponse.store_id.in_(select(Store.id).where(Store.code == store)))
    if start is not None:
        where.append(SurveyResponse.created_at >= start)
    if end is not None:
        where.append(SurveyResponse.created_at < end)
    return where


def week_of(day: date) -> str:
    """The ISO 8601 week a day falls in: ``2026-W49``."""
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def trend(survey_id: int, store: str | None = None, start: datetime | None = None,
          end: datetime | None = None) -> list[dict[str, Any]]:
    """The score by ISO week (of UTC days) from the first week with an answer to the
    last, weeks without one included (score None): one query, grouped by day and band,
    folded into weeks here (the week number is not portable SQL)."""
    survey = get_or_404(Survey, survey_id, "survey")
    high, low = BANDS[survey.kind]
    day = day_of(SurveyResponse.created_at)
    rows = db.session.execute(
        select(day, func.count(), func.sum(case((SurveyResponse.score >= high, 1), else_=0)),
               func.sum(case((SurveyResponse.score <= low, 1), else_=0)))
        .where(*_answers_where(survey, store, start, end)).group_by(day)).all()
    weeks: dict[date, list[int]] = {}
    for text, n, promoters, detractors in rows:
        monday = date.fromisoformat(text) - timedelta(days=date.fromisoformat(text).weekday())
        tally = weeks.setdefault(monday, [0, 0, 0])
        tally[0] += n
        tally[1] += int(promoters or 0)
        tally[2] += int(detractors or 0)
    if not weeks:
        return []
    out, monday, last = [], min(weeks), max(weeks)
    while monday <= last:
        n, p, d = weeks.get(monday, (0, 0, 0))
        out.append({"week": week_of(monday), "week_start": monday, "responses": n,
                    "promoters": p, "passives": n - p - d, "detractors": d,
                    survey.kind: _score(survey.kind, p, d, n)})
        monday += timedelta(days=7)
    return out


def comments(survey_id: int, store: str | None = None, score: int | None = None,
             band: str | None = None, start: datetime | None = None,
             end: datetime | None = None) -> Select[Any]:
    """Answers with a comment, newest first, for paginating with ``comment_item``: by
    store, score (exact, or a band: promoters, passives, detractors) and period."""
    survey = get_or_404(Survey, survey_id, "survey")
    high, low = BANDS[survey.kind]
    where = _answers_where(survey, store, start, end)
    if score is not None:
        where.append(SurveyResponse.score == score)
    if band == "promoters":
        where.append(SurveyResponse.score >= high)
    elif band == "detractors":
        where.append(SurveyResponse.score <= low)
    elif band == "passives":
        where.append(SurveyResponse.score.between(low + 1, high - 1))
    return (select(SurveyResponse, Store.code)
            .join(Store, Store.id == SurveyResponse.store_id)
            .where(*where, SurveyResponse.comment_sealed.is_not(None))
            .order_by(SurveyResponse.created_at.desc(), SurveyResponse.id.desc()))


def comment_item(row: Any) -> dict[str, Any]:
    """A row of ``comments()`` as its page shows it (the comment opened)."""
    answer, store = row
    return {"id": answer.id, "score": answer.score, "comment": answer.comment,
            "created_at": answer.created_at, "customer_id": answer.customer_id,
            "channel": answer.channel, "store": store}
