"""HTTP endpoints for the outbox and surveys."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from campaigns import outbox, surveys
from campaigns.models import Survey
from campaigns.schemas import (
    MessagePageSchema,
    MessageQuerySchema,
    ResultsQuerySchema,
    SurveyPageSchema,
    SurveyResultsSchema,
    SurveySchema,
)
from crm.api import Blueprint
from crm.auth import require
from crm.db import db, get_or_404
from crm.pagination import paginate
from crm.schemas import PageArgs

messages_blp = Blueprint("messages", __name__, description="The SMS outbox")
surveys_blp = Blueprint("surveys", __name__, description="Satisfaction surveys")


@messages_blp.route("/messages")
class Messages(MethodView):
    @require("marketing")
    @messages_blp.arguments(MessageQuerySchema, location="query")
    @messages_blp.response(200, MessagePageSchema)
    def get(self, args: dict[str, Any]) -> Any:
        page, size = args.pop("page"), args.pop("page_size")
        return paginate(outbox.list_messages(args), page, size)


@surveys_blp.route("/surveys")
class Surveys(MethodView):
    @require("marketing")
    @surveys_blp.arguments(PageArgs, location="query")
    @surveys_blp.response(200, SurveyPageSchema)
    def get(self, args: dict[str, Any]) -> Any:
        return paginate(surveys.list_surveys(), **args)

    @require("marketing")
    @surveys_blp.arguments(SurveySchema)
    @surveys_blp.response(201, SurveySchema)
    def post(self, data: dict[str, Any]) -> Any:
        survey = surveys.create_survey(data)
        db.session.commit()
        return survey


@surveys_blp.route("/surveys/<id:survey_id>")
class SurveyById(MethodView):
    @require("marketing")
    @surveys_blp.response(200, SurveySchema)
    def get(self, survey_id: int) -> Any:
        return get_or_404(Survey, survey_id, "survey")

    @require("marketing")
    @surveys_blp.arguments(SurveySchema(partial=True))
    @surveys_blp.response(200, SurveySchema)
    def patch(self, data: dict[str, Any], survey_id: int) -> Any:
        survey = surveys.update_survey(survey_id, data)
        db.session.commit()
        return survey


@surveys_blp.route("/surveys/<id:survey_id>/results")
class SurveyResults(MethodView):
    @require("marketing")
    @surveys_blp.arguments(ResultsQuerySchema, location="query")
    @surveys_blp.response(200, SurveyResultsSchema)
    def get(self, args: dict[str, Any], survey_id: int) -> Any:
        return surveys.results(survey_id, args.get("store"), args.get("from_"), args.get("to"))
