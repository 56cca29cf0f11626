"""The API's shapes for messages and surveys."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from campaigns.models import MESSAGE_STATUSES, PURPOSES, SURVEY_KINDS
from crm.schemas import Moment, PageArgs, Text, page_of

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


class SurveyResultsSchema(_Tally):
    survey_id = fields.Integer()
    kind = fields.String()
    invited = fields.Integer()
    response_rate = fields.Integer(allow_none=True)
    by_store = fields.List(fields.Nested(StoreTallySchema))
    comments = fields.List(fields.Nested(CommentSchema))
