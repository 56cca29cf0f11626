"""Demo data for messaging: an NPS survey sent right after each purchase."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from campaigns import surveys
from campaigns.models import Survey
from crm.db import db

DEMO_SURVEY = {"name": "After your visit", "kind": "nps", "delay_hours": 0,
               "throttle_days": 90,
               "question": "How likely are you to recommend us to a friend?"}


def load(_keys: Any) -> None:
    if db.session.scalar(select(Survey.id).where(Survey.name == DEMO_SURVEY["name"])) is None:
        surveys.create_survey(dict(DEMO_SURVEY))
