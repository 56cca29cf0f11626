"""The page a customer answers a survey on: ``/s/<token>``, a signed, expiring,
single-use link (``campaigns.surveys``). Plain HTML that works on any phone."""

from __future__ import annotations

from flask import Blueprint, render_template, request

from campaigns import surveys
from campaigns.models import SurveyInvitation
from crm.db import db
from crm.errors import DomainError

survey_page = Blueprint("survey_page", __name__, template_folder="templates")

LABELS = {"nps": ("Not at all likely", "Extremely likely"),
          "csat": ("Very unsatisfied", "Very satisfied")}


def _message(title: str, text: str, status: int) -> tuple[str, int]:
    return render_template("survey.html", title=title, text=text), status


def _form(inv: SurveyInvitation, error: str | None = None,
          status: int = 200) -> tuple[str, int]:
    survey = inv.survey
    low, high = surveys.SCALES[survey.kind]
    low_label, high_label = LABELS[survey.kind]
    return render_template("survey.html", title=survey.name, question=survey.question,
                           scores=range(low, high + 1), low_label=low_label,
                           high_label=high_label, error=error), status


@survey_page.route("/s/<token>", methods=["GET", "POST"])
def answer_page(token: str) -> tuple[str, int]:
    try:
        inv = surveys.invitation_for(token)
    except DomainError as e:
        return _message("Survey", e.detail, e.status)
    if request.method == "GET":
        return _form(inv)
    raw = request.form.get("score", "")
    score = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 2 else None
    try:
        surveys.answer(inv.id, score, request.form.get("comment"), "web")
    except DomainError as e:
        db.session.rollback()
        if e.status == 422:
            return _form(inv, error=e.detail, status=422)
        return _message("Survey", e.detail, e.status)
    db.session.commit()
    return _message("Thank you!", "Your answer has been recorded.", 200)
