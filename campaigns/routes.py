"""HTTP endpoints for the outbox, surveys, segments and campaigns."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from campaigns import campaign_settings, outbox, reports, segments, surveys
from campaigns.models import Campaign, Segment, Survey
from campaigns.schemas import (
    CampaignPageSchema,
    CampaignReportSchema,
    CampaignSchema,
    CommentQuerySchema,
    MessagePageSchema,
    MessageQuerySchema,
    MessageWithHistorySchema,
    ResultsQuerySchema,
    RuleSchema,
    SegmentPageSchema,
    SegmentPreviewSchema,
    SegmentSchema,
    SurveyCommentPageSchema,
    SurveyPageSchema,
    SurveyResultsSchema,
    SurveySchema,
    SurveyTrendSchema,
)
from crm.api import Blueprint
from crm.auth import require
from crm.db import db
from crm.errors import get_or_404
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


@messages_blp.route("/messages/<id:message_id>")
class MessageById(MethodView):
    @require("marketing")
    @messages_blp.response(200, MessageWithHistorySchema)
    def get(self, message_id: int) -> Any:
        """A message and its delivery history (Twilio's status reports)."""
        message = outbox.get_message(message_id)
        message.history = outbox.delivery_history(message_id)
        return message


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


@surveys_blp.route("/surveys/<id:survey_id>/trend")
class SurveyTrend(MethodView):
    @require("marketing")
    @surveys_blp.arguments(ResultsQuerySchema, location="query")
    @surveys_blp.response(200, SurveyTrendSchema)
    def get(self, args: dict[str, Any], survey_id: int) -> Any:
        """The score by ISO week (UTC days), per store or all."""
        survey = get_or_404(Survey, survey_id, "survey")
        return {"survey_id": survey.id, "kind": survey.kind, "weeks": surveys.trend(
            survey_id, args.get("store"), args.get("from_"), args.get("to"))}


@surveys_blp.route("/surveys/<id:survey_id>/comments")
class SurveyComments(MethodView):
    @require("marketing")
    @surveys_blp.arguments(CommentQuerySchema, location="query")
    @surveys_blp.response(200, SurveyCommentPageSchema)
    def get(self, args: dict[str, Any], survey_id: int) -> Any:
        """Answers with a comment, newest first: by store, score or band, and period."""
        return paginate(surveys.comments(
            survey_id, args.get("store"), args.get("score"), args.get("band"),
            args.get("from_"), args.get("to")), args["page"], args["page_size"],
            surveys.comment_item)


segments_blp = Blueprint("segments", __name__, description="Customers picked by rules")
campaigns_blp = Blueprint("campaigns", __name__, description="Retention campaigns by SMS")


@segments_blp.route("/segments")
class Segments(MethodView):
    @require("marketing")
    @segments_blp.arguments(PageArgs, location="query")
    @segments_blp.response(200, SegmentPageSchema)
    def get(self, args: dict[str, Any]) -> Any:
        return paginate(segments.list_segments(), **args)

    @require("marketing")
    @segments_blp.arguments(SegmentSchema)
    @segments_blp.response(201, SegmentSchema)
    def post(self, data: dict[str, Any]) -> Any:
        segment = segments.create_segment(data)
        db.session.commit()
        return segment


@segments_blp.route("/segments/preview")
class RulePreview(MethodView):
    @require("marketing")
    @segments_blp.arguments(RuleSchema)
    @segments_blp.response(200, SegmentPreviewSchema)
    def post(self, data: dict[str, Any]) -> Any:
        """Count and sample of a rule, without saving it."""
        return segments.preview(data["rule"])


@segments_blp.route("/segments/<id:segment_id>")
class SegmentById(MethodView):
    @require("marketing")
    @segments_blp.response(200, SegmentSchema)
    def get(self, segment_id: int) -> Any:
        return get_or_404(Segment, segment_id, "segment")

    @require("marketing")
    @segments_blp.arguments(SegmentSchema(partial=True))
    @segments_blp.response(200, SegmentSchema)
    def patch(self, data: dict[str, Any], segment_id: int) -> Any:
        segment = segments.update_segment(segment_id, data)
        db.session.commit()
        return segment


@segments_blp.route("/segments/<id:segment_id>/preview")
class SegmentPreview(MethodView):
    @require("marketing")
    @segments_blp.response(200, SegmentPreviewSchema)
    def get(self, segment_id: int) -> Any:
        return segments.preview(get_or_404(Segment, segment_id, "segment").rule)


@campaigns_blp.route("/campaigns")
class Campaigns(MethodView):
    @require("marketing")
    @campaigns_blp.arguments(PageArgs, location="query")
    @campaigns_blp.response(200, CampaignPageSchema)
    def get(self, args: dict[str, Any]) -> Any:
        return paginate(campaign_settings.list_campaigns(), **args)

    @require("marketing")
    @campaigns_blp.arguments(CampaignSchema)
    @campaigns_blp.response(201, CampaignSchema)
    def post(self, data: dict[str, Any]) -> Any:
        campaign = campaign_settings.create_campaign(data)
        db.session.commit()
        return campaign


@campaigns_blp.route("/campaigns/<id:campaign_id>")
class CampaignById(MethodView):
    @require("marketing")
    @campaigns_blp.response(200, CampaignSchema)
    def get(self, campaign_id: int) -> Any:
        return get_or_404(Campaign, campaign_id, "campaign")

    @require("marketing")
    @campaigns_blp.arguments(CampaignSchema(partial=True))
    @campaigns_blp.response(200, CampaignSchema)
    def patch(self, data: dict[str, Any], campaign_id: int) -> Any:
        campaign = campaign_settings.update_campaign(campaign_id, data)
        db.session.commit()
        return campaign


@campaigns_blp.route("/campaigns/<id:campaign_id>/activate")
class CampaignActivate(MethodView):
    @require("marketing")
    @campaigns_blp.response(200, CampaignSchema)
    def post(self, campaign_id: int) -> Any:
        campaign = campaign_settings.activate(campaign_id)
        db.session.commit()
        return campaign


@campaigns_blp.route("/campaigns/<id:campaign_id>/pause")
class CampaignPause(MethodView):
    @require("marketing")
    @campaigns_blp.response(200, CampaignSchema)
    def post(self, campaign_id: int) -> Any:
        campaign = campaign_settings.pause(campaign_id)
        db.session.commit()
        return campaign


@campaigns_blp.route("/campaigns/<id:campaign_id>/report")
class CampaignReport(MethodView):
    @require("marketing")
    @campaigns_blp.response(200, CampaignReportSchema)
    def get(self, campaign_id: int) -> Any:
        return reports.report(campaign_id)
