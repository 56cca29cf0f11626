"""Surveys: the list, create and edit (the API's schema and ``campaigns.surveys``), and
each survey's results: the score, promoters / passives / detractors, response rate, the
trend by ISO week (a chart and the same figures as a table), per store or all, and the
comments filtered by store, score and period, newest first, a page at a time."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from sqlalchemy import func, select

from campaigns import surveys
from campaigns.models import Survey, SurveyResponse
from campaigns.schemas import SurveySchema
from console import forms
from console.web import actor, bp, can, role, user_zone
from crm import stores
from crm.db import db
from crm.errors import DomainError
from crm.pagination import paginate

SCHEMA = SurveySchema()
FIELDS = ["name", "kind", "question", "delay_hours", "throttle_days", "active"]
LABELS = {"kind": "Kind (nps: 0-10, csat: 1-5)", "delay_hours": "Delay (hours after the sale)",
          "throttle_days": "Throttle (days)"}
COMMENTS_PER_PAGE = 20
BANDS = {"promoters": "Promoters", "passives": "Passives", "detractors": "Detractors"}


def _fields() -> list[forms.Field]:
    return forms.describe(SCHEMA, FIELDS, LABELS)


def _survey(survey_id: int) -> Survey:
    survey = db.session.get(Survey, survey_id)
    if survey is None:
        abort(404)
    return survey


def _list(status: int = 200, **extra: Any) -> Any:
    answered = dict(db.session.execute(select(SurveyResponse.survey_id, func.count())
                                       .group_by(SurveyResponse.survey_id)).all())
    context = {"rows": db.session.scalars(surveys.list_surveys()).all(), "answered": answered,
               "fields": _fields(), "values": forms.defaults(SCHEMA), "errors": {},
               "message": "", **extra}
    return render_template("console/surveys.html", **context), status


@bp.get("/surveys")
def surveys_list() -> Any:
    return _list()


@bp.post("/surveys")
@role("marketer")
def surveys_create() -> Any:
    outcome = forms.submit(SCHEMA, request.form,
                           lambda data: surveys.create_survey(data, actor()), FIELDS)
    if outcome.ok:
        flash(f"The survey {outcome.result.name!r} was created.", "ok")
        return redirect(url_for("console.survey_results", survey_id=outcome.result.id))
    return _list(422, values=dict(request.form), errors=outcome.errors,
                 message=outcome.message)


@bp.route("/surveys/<int:survey_id>", methods=["GET", "POST"])
def survey_edit(survey_id: int) -> Any:
    survey = _survey(survey_id)
    if request.method == "GET":
        return render_template("console/survey_edit.html", survey=survey, fields=_fields(),
                               values=forms.values_of(SCHEMA, survey), errors={}, message="")
    if not can("marketer"):  # a viewer reads only
        abort(403)
    outcome = forms.submit(SurveySchema(partial=True), request.form,
                           lambda data: surveys.update_survey(survey_id, data, actor()), FIELDS)
    if outcome.ok:
        flash(f"The survey {survey.name!r} was saved.", "ok")
        return redirect(url_for("console.survey_results", survey_id=survey_id))
    db.session.expire_all()
    return render_template("console/survey_edit.html", survey=_survey(survey_id),
                           fields=_fields(), values=dict(request.form),
                           errors=outcome.errors, message=outcome.message), 422


# -- results -----------------------------------------------------------------------------

def _day(raw: str) -> date | None:
    try:
        return date.fromisoformat(raw)
    except ValueError:
        return None


def results_filters(args: Mapping[str, str], kind: str) -> tuple[dict[str, Any],
                                                                  dict[str, list[str]]]:
    """The results page's filters from its query string, with an error per bad one (a
    bad filter is left out, never guessed). Days are the user's: ``from`` is the start
    of that day and ``to`` the end of its day, in the user's zone."""
    low, high = surveys.SCALES[kind]
    zone = user_zone()
    known = {s.code for s in db.session.scalars(stores.list_stores())}
    out: dict[str, Any] = {"store": None, "start": None, "end": None, "score": None,
                           "band": None, "page": 1}
    errors: dict[str, list[str]] = {}
    store = args.get("store", "").strip()
    if store:
        if store in known:
            out["store"] = store
        else:
            errors["store"] = ["No store has this code."]
    for name, key, shift in (("from", "start", 0), ("to", "end", 1)):
        raw = args.get(name, "").strip()
        if raw:
            day = _day(raw)
            if day is None:
                errors[name] = ["A date written YYYY-MM-DD."]
            else:
                out[key] = datetime.combine(day + timedelta(days=shift), time(), zone)
    if out["start"] and out["end"] and out["start"] >= out["end"]:
        errors["to"] = ["The end is before the start."]
        out["end"] = None
    score = args.get("score", "").strip()
    if score:
        if score in BANDS:
            out["band"] = score
        elif score.isdigit() and low <= int(score) <= high:
            out["score"] = int(score)
        else:
            errors["score"] = [f"A score from {low} to {high}, or a band."]
    page = args.get("page", "1")
    out["page"] = max(1, min(int(page), 10**6)) if page.isdigit() else 1
    return out, errors


@bp.get("/surveys/<int:survey_id>/results")
def survey_results(survey_id: int) -> Any:
    survey = _survey(survey_id)
    f, errors = results_filters(request.args, survey.kind)
    try:
        figures = surveys.results(survey.id, f["store"], f["start"], f["end"])
        weeks = surveys.trend(survey.id, f["store"], f["start"], f["end"])
        body, _, headers = paginate(surveys.comments(
            survey.id, f["store"], f["score"], f["band"], f["start"], f["end"]),
            f["page"], COMMENTS_PER_PAGE, surveys.comment_item)
    except DomainError:
        abort(404)
    low, high = surveys.SCALES[survey.kind]
    query = {k: v for k, v in request.args.items() if k != "page" and v and k not in errors}
    return render_template(
        "console/survey_results.html", survey=survey, r=figures, weeks=weeks,
        comments=body["items"], meta=json.loads(headers["X-Pagination"]), errors=errors,
        query=query, args=request.args, stores=db.session.scalars(stores.list_stores()).all(),
        scores=range(low, high + 1), bands=BANDS, chart=_chart(survey.kind, weeks),
        bands_help=_bands_help(survey.kind)), 422 if errors else 200


def _chart(kind: str, weeks: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "line", "labels": [w["week"] for w in weeks],
            "series": [{"label": kind.upper(), "data": [w[kind] for w in weeks]}]}


def _bands_help(kind: str) -> str:
    promoter, detractor = surveys.BANDS[kind]
    low, high = surveys.SCALES[kind]
    return (f"Promoters {promoter}-{high}, passives {detractor + 1}-{promoter - 1}, "
            f"detractors {low}-{detractor}.")
