"""Messaging's and surveys' part of a customer's timeline and GDPR export, and what an
erasure or a merge does to them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, cast, literal, select, update
from sqlalchemy.sql import Select

from campaigns.models import InboundMessage, Message, SurveyInvitation, SurveyResponse
from crm.db import db
from crm.timeline import row


def timeline_sources(ids: list[int]) -> list[Select[Any]]:
    """The texts are sealed: each label ends where its text goes, and ``timeline_texts``
    opens the texts of the page's rows."""
    return [
        select(*row(Message.created_at, "sms", Message.id,
                    Message.purpose + literal(" sms, ") + Message.status + literal(": ")))
        .where(Message.customer_id.in_(ids)),
        select(*row(InboundMessage.created_at, "sms_reply", InboundMessage.id,
                    InboundMessage.kind + literal(": ")))
        .where(InboundMessage.customer_id.in_(ids)),
        select(*row(SurveyResponse.created_at, "survey_answer", SurveyResponse.id,
                    literal("answered survey ") + cast(SurveyResponse.survey_id, String)
                    + literal(": ") + cast(SurveyResponse.score, String)))
        .where(SurveyResponse.customer_id.in_(ids)),
    ]


def _texts(model: Any, attribute: str, prefix: str = "") -> Any:
    def texts(ids: list[int]) -> dict[int, str]:
        found = {}
        for item in db.session.scalars(select(model).where(model.id.in_(ids))):
            text = getattr(item, attribute)
            found[item.id] = f"{prefix}{text[:80]}" if text else ""
        return found
    return texts


# timeline type -> the end of each label, by ref_id (one query per type and page)
timeline_texts = {"sms": _texts(Message, "body"), "sms_reply": _texts(InboundMessage, "body"),
                  "survey_answer": _texts(SurveyResponse, "comment", ", ")}


def export_section(ids: list[int]) -> dict[str, Any]:
    messages = db.session.scalars(select(Message).where(Message.customer_id.in_(ids))
                                  .order_by(Message.id))
    replies = db.session.scalars(select(InboundMessage)
                                 .where(InboundMessage.customer_id.in_(ids))
                                 .order_by(InboundMessage.id))
    answers = db.session.scalars(select(SurveyResponse)
                                 .where(SurveyResponse.customer_id.in_(ids))
                                 .order_by(SurveyResponse.id))
    return {"messaging": {
        "sms_sent": [{"to": m.to_number, "body": m.body, "purpose": m.purpose,
                      "status": m.status, "created_at": m.created_at} for m in messages],
        "sms_received": [{"from": m.from_number, "body": m.body, "created_at": m.created_at}
                         for m in replies],
        "survey_answers": [{"survey_id": a.survey_id, "score": a.score, "comment": a.comment,
                            "created_at": a.created_at} for a in answers],
    }}


def on_erased(_sender: Any, customer_ids: list[int], **_: Any) -> None:
    """Erasure: nothing more is sent, and what was said to or by the person is blanked
    (scores stay, without a comment, so survey results do not change)."""
    db.session.execute(update(Message).where(Message.customer_id.in_(customer_ids),
                                             Message.status.in_(("queued", "in_doubt")))
                       .values(status="canceled", error_code="erased"))
    db.session.execute(update(Message).where(Message.customer_id.in_(customer_ids))
                       .values(body_sealed=None, to_sealed=None, to_index=None))
    db.session.execute(update(InboundMessage).where(InboundMessage.customer_id.in_(customer_ids))
                       .values(body_sealed=None, from_sealed=None, reply=None))
    db.session.execute(update(SurveyResponse).where(SurveyResponse.customer_id.in_(customer_ids))
                       .values(comment_sealed=None))
    db.session.execute(update(SurveyInvitation)
                       .where(SurveyInvitation.customer_id.in_(customer_ids),
                              SurveyInvitation.status == "scheduled")
                       .values(status="canceled"))


def on_merged(_sender: Any, *, survivor_id: int, source_id: int, **_: Any) -> None:
    """What is still to be sent to the merged record goes to the survivor (whose consent
    then decides); history stays with the record it happened to."""
    db.session.execute(update(Message).where(Message.customer_id == source_id,
                                             Message.status == "queued")
                       .values(customer_id=survivor_id))
    db.session.execute(update(SurveyInvitation)
                       .where(SurveyInvitation.customer_id == source_id,
                              SurveyInvitation.status.in_(("scheduled", "invited")))
                       .values(customer_id=survivor_id))

