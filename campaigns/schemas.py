"""The API's shapes for messages and surveys."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from campaigns.campaign_settings import TRIGGERS
from campaigns.hook_models import DELIVERY_STATUSES
from campaigns.models import MESSAGE_STATUSES, PURPOSES, SURVEY_KINDS
from crm.schemas import Moment, PageArgs, QuietHoursSchema, Text, page_of

_ID = validate.Range(1, 2**63 - 1)


class MessageSchema(Schema):
    id = fields.Integer()
    customer_id = fields.Integer(allow_none=True)
    store_id = fields.Integer(allow_none=True)
    campaign_id = fields.Integer(allow_none=True)
    to = fields.String(attribute="to_number")
    body = fields.String()
    purpose = fields.String()
    status = fields.String(metadata={"enum": list(MESSAGE_STATUSES)})
    provider_sid = fields.String(allow_none=True)
    provider_status = fields.String(allow_none=True)
    attempts = fields.Integer()
    next_attempt_at = fields.AwareDateTime()
    error_code = fields.String(allow_none=True)
    error = fields.String(allow_none=True)
    created_at = fields.AwareDateTime()
    submitted_at = fields.AwareDateTime(allow_none=True)
    updated_at = fields.AwareDateTime()


MessagePageSchema = page_of(MessageSchema, "MessagePage")


class MessageEventSchema(Schema):
    provider_status = fields.String(metadata={"description": "Twilio's status, as sent"})
    status = fields.String(allow_none=True, metadata={
        "description": "our status it maps to (null: a status we do not know)"})
    applied = fields.Boolean(metadata={
        "description": "whether it moved the message on (a late report does not)"})
    error_code = fields.String(allow_none=True)
    created_at = fields.AwareDateTime()


class MessageWithHistorySchema(MessageSchema):
    history = fields.List(fields.Nested(MessageEventSchema), metadata={
        "description": "Twilio's delivery reports about it, in the order they came"})


class MessageQuerySchema(PageArgs):
    customer_id = fields.Integer(validate=_ID)
    campaign_id = fields.Integer(validate=_ID)
    status = fields.String(validate=validate.OneOf(MESSAGE_STATUSES))
    purpose = fields.String(validate=validate.OneOf(PURPOSES))


class SurveySchema(Schema):
    id = fields.Integer(dump_only=True)
    name = Text(required=True, validate=validate.Length(1, 200))
    kind = fields.String(required=True, validate=validate.OneOf(SURVEY_KINDS))
    question = Text(required=True, validate=validate.Length(1, 300))
    trigger = fields.String(load_default="purchase", validate=validate.OneOf(("purchase",)))
    channel = fields.String(load_default="sms", validate=validate.OneOf(("sms",)))
    delay_hours = fields.Integer(load_default=2, validate=validate.Range(0, 24 * 30))
    throttle_days = fields.Integer(load_default=90, validate=validate.Range(0, 3650),
                                   metadata={"description": "At most one survey per person "
                                             "in this many days; a throttled one is dropped."})
    active = fields.Boolean(load_default=True)
    created_at = fields.AwareDateTime(dump_only=True)
    updated_at = fields.AwareDateTime(dump_only=True)


SurveyPageSchema = page_of(SurveySchema, "SurveyPage")


class ResultsQuerySchema(Schema):
    store = fields.String(validate=validate.Length(1, 32))
    from_ = Moment(data_key="from")
    to = Moment()


class CommentQuerySchema(PageArgs, ResultsQuerySchema):
    score = fields.Integer(validate=validate.Range(0, 10))
    band = fields.String(validate=validate.OneOf(("promoters", "passives", "detractors")))


class _Tally(Schema):
    responses = fields.Integer()
    promoters = fields.Integer(metadata={"description": "NPS 9-10; CSAT 4-5"})
    passives = fields.Integer(metadata={"description": "NPS 7-8; CSAT 3"})
    detractors = fields.Integer(metadata={"description": "NPS 0-6; CSAT 1-2"})
    nps = fields.Integer(allow_none=True)
    csat = fields.Integer(allow_none=True)


class StoreTallySchema(_Tally):
    store = fields.String()


class CommentSchema(Schema):
    score = fields.Integer()
    comment = fields.String()
    created_at = fields.AwareDateTime()
    customer_id = fields.Integer()
    channel = fields.String()
    store = fields.String()


class SurveyCommentSchema(CommentSchema):
    id = fields.Integer()


SurveyCommentPageSchema = page_of(SurveyCommentSchema, "SurveyCommentPage")


class WeekSchema(_Tally):
    week = fields.String(metadata={"description": "ISO 8601 week of UTC days", "example":
                                   "2026-W49"})
    week_start = fields.Date(metadata={"description": "its Monday"})


class SurveyTrendSchema(Schema):
    survey_id = fields.Integer()
    kind = fields.String()
    weeks = fields.List(fields.Nested(WeekSchema), metadata={
        "description": "first week with an answer to the last, empty weeks included"})


class SurveyResultsSchema(_Tally):
    survey_id = fields.Integer()
    kind = fields.String()
    invited = fields.Integer()
    response_rate = fields.Integer(allow_none=True)
    by_store = fields.List(fields.Nested(StoreTallySchema))
    comments = fields.List(fields.Nested(CommentSchema))


# -- segments and campaigns --------------------------------------------------------------

class SegmentSchema(Schema):
    id = fields.Integer(dump_only=True)
    name = Text(required=True, validate=validate.Length(1, 200))
    rule = fields.Dict(required=True, metadata={
        "description": "all / any / not of conditions {field, op, value, window_days?}",
        "example": {"all": [
            {"field": "spend", "op": "gte", "value": "400.00", "window_days": 30},
            {"field": "days_since_last_purchase", "op": "gte", "value": 14}]}})
    created_at = fields.AwareDateTime(dump_only=True)
    updated_at = fields.AwareDateTime(dump_only=True)


SegmentPageSchema = page_of(SegmentSchema, "SegmentPage")


class RuleSchema(Schema):
    rule = fields.Dict(required=True)


class MemberSampleSchema(Schema):
    id = fields.Integer()
    first_name = fields.String(allow_none=True)
    last_name = fields.String(allow_none=True)
    city = fields.String(allow_none=True)
    created_at = fields.AwareDateTime()


class SegmentPreviewSchema(Schema):
    count = fields.Integer()
    sample = fields.List(fields.Nested(MemberSampleSchema))


def _moment_text(value: str) -> None:
    """Kept as text (the schedule is JSON), checked as every time the API takes."""
    Moment().deserialize(value)


class ScheduleSchema(Schema):
    at = fields.String(validate=_moment_text, metadata={"description": "once, at this time"})
    cron = fields.String(validate=validate.Length(1, 100),
                         metadata={"description": "recurring, crontab in UTC",
                                   "example": "0 10 * * MON"})
    trigger = fields.String(validate=validate.OneOf(tuple(TRIGGERS)))
    days = fields.Integer(validate=validate.Range(1, 3650), metadata={
        "description": "for no_purchase (days without one) and points_expiring (within)"})

    @validates_schema
    def _one_kind(self, data: dict[str, Any], **_: Any) -> None:
        kinds = [k for k in ("at", "cron", "trigger") if k in data]
        if len(kinds) != 1:
            raise ValidationError("Give exactly one of at, cron or trigger.", "_schema")
        if "days" in data and "trigger" not in data:
            raise ValidationError("days goes with a trigger.", "days")


class FrequencyCapSchema(Schema):
    count = fields.Integer(required=True, validate=validate.Range(1, 100))
    days = fields.Integer(required=True, validate=validate.Range(1, 365))


class CampaignSchema(Schema):
    id = fields.Integer(dump_only=True)
    name = Text(required=True, validate=validate.Length(1, 200))
    segment_id = fields.Integer(required=True, validate=_ID)
    channel = fields.String(load_default="sms", validate=validate.OneOf(("sms",)))
    template = fields.String(required=True, validate=validate.Length(1, 1600), metadata={
        "description": "Fields: {first_name} {last_name} {name} {points} {tier} "
                       "{coupon_code} {expiring_points} {recommendation}",
        "example": "Hi {name}, {points} points are waiting. Use {coupon_code} for 10% off."})
    offer_id = fields.Integer(allow_none=True, load_default=None, validate=_ID)
    schedule = fields.Nested(ScheduleSchema, required=True)
    holdout_percent = fields.Integer(load_default=10, validate=validate.Range(0, 90))
    quiet_hours = fields.Nested(QuietHoursSchema, allow_none=True, load_default=None)
    frequency_cap = fields.Nested(FrequencyCapSchema, allow_none=True, load_default=None)
    reentry_days = fields.Integer(load_default=30, validate=validate.Range(1, 3650))
    attribution_days = fields.Integer(load_default=14, validate=validate.Range(1, 90))
    status = fields.String(dump_only=True)
    activated_at = fields.AwareDateTime(dump_only=True, allow_none=True)
    last_run_at = fields.AwareDateTime(dump_only=True, allow_none=True)
    created_at = fields.AwareDateTime(dump_only=True)


CampaignPageSchema = page_of(CampaignSchema, "CampaignPage")


class GroupSchema(Schema):
    recipients = fields.Integer()
    converters = fields.Integer()
    conversion_rate = fields.Float(allow_none=True)
    conversion_ci_low = fields.Float(allow_none=True, metadata={
        "description": "95% interval of the conversion rate (Wilson)"})
    conversion_ci_high = fields.Float(allow_none=True)
    revenue = fields.String()
    revenue_per_recipient = fields.String(allow_none=True)
    revenue_per_recipient_ci_low = fields.String(allow_none=True, metadata={
        "description": "95% interval of the revenue per recipient"})
    revenue_per_recipient_ci_high = fields.String(allow_none=True)


class CampaignReportSchema(Schema):
    campaign_id = fields.Integer()
    status = fields.String()
    last_run_at = fields.AwareDateTime(allow_none=True)
    attribution_days = fields.Integer()
    entries = fields.Integer(metadata={"description": "people picked, counting each run"})
    audience = fields.Integer(metadata={"description": "distinct people picked"})
    targeted = fields.Integer()
    holdout = fields.Integer()
    not_sent = fields.Dict(keys=fields.String(), values=fields.Integer(),
                           metadata={"description": "targeted but not sent, by reason"})
    waiting_for_quiet_hours_end = fields.Integer()
    queued = fields.Integer()
    sent = fields.Integer()
    delivered = fields.Integer()
    failed = fields.Integer()
    skipped = fields.Integer()
    opted_out = fields.Integer()
    coupons_redeemed = fields.Integer()
    currency = fields.String()
    groups = fields.Dict(keys=fields.String(), values=fields.Nested(GroupSchema))
    lift = fields.Dict(metadata={"description": "conversion difference targeted - holdout "
                                 "with its 95% interval, relative lift, incremental revenue"})
    recommended_products = fields.Dict(metadata={
        "description": "by group (targeted, holdout): buyers of a product recommended to "
        "them ({recommended_product(s)}) within the attribution window, lines, buyer_rate"})


class WebhookEndpointSchema(Schema):
    id = fields.Integer(dump_only=True)
    url = fields.String(required=True, validate=validate.Length(1, 2000))
    event_types = fields.List(fields.String(validate=validate.Length(1, 64)), required=True,
                              validate=validate.Length(1, 50),
                              metadata={"example": ["purchase.*", "customer.points.changed"]})
    description = Text(allow_none=True, validate=validate.Length(0, 500))
    enabled = fields.Boolean(load_default=True)
    disabled_reason = fields.String(dump_only=True, allow_none=True)
    failing_since = fields.AwareDateTime(dump_only=True, allow_none=True)
    previous_secret_until = fields.AwareDateTime(dump_only=True, allow_none=True)
    created_at = fields.AwareDateTime(dump_only=True)
    updated_at = fields.AwareDateTime(dump_only=True)


class WebhookEndpointCreatedSchema(WebhookEndpointSchema):
    secret = fields.String(dump_only=True, metadata={
        "description": "whsec_...: shown once, at creation and at each rotation."})


WebhookEndpointPageSchema = page_of(WebhookEndpointSchema, "WebhookEndpointPage")


class WebhookAttemptSchema(Schema):
    started_at = fields.AwareDateTime()
    duration_ms = fields.Integer()
    status_code = fields.Integer(allow_none=True)
    error = fields.String(allow_none=True)
    response_head = fields.String(allow_none=True)


class WebhookDeliverySchema(Schema):
    id = fields.Integer()
    endpoint_id = fields.Integer()
    event_id = fields.Integer()
    webhook_id = fields.String(attribute="event.msg_id")
    type = fields.String(attribute="event.type")
    status = fields.String(metadata={"enum": list(DELIVERY_STATUSES)})
    attempts = fields.Integer()
    next_attempt_at = fields.AwareDateTime()
    last_status_code = fields.Integer(allow_none=True)
    last_error = fields.String(allow_none=True)
    created_at = fields.AwareDateTime()
    history = fields.List(fields.Nested(WebhookAttemptSchema))


WebhookDeliveryPageSchema = page_of(WebhookDeliverySchema, "WebhookDeliveryPage")


class WebhookDeliveryQuerySchema(PageArgs):
    status = fields.String(validate=validate.OneOf(DELIVERY_STATUSES))


class WebhookRecoverSchema(Schema):
    since = fields.AwareDateTime(required=True)


class WebhookRecoveredSchema(Schema):
    queued = fields.Integer()


class WebhookTestSchema(Schema):
    event_id = fields.Integer()
    webhook_id = fields.String()
