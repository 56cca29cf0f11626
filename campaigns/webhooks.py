"""Twilio's calls to us: delivery reports and inbound SMS. They carry no API key; each
request is checked against its X-Twilio-Signature with the client's RequestValidator,
over the public URL Twilio called (PUBLIC_BASE_URL plus path and query string): a bad
or missing signature is a 403 and changes nothing."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from campaigns import inbound, outbox
from crm.db import db
from crm.errors import Forbidden, Invalid

webhooks = Blueprint("twilio_webhooks", __name__, url_prefix="/webhooks/twilio")


def _verify() -> None:
    token = current_app.config["TWILIO_AUTH_TOKEN"]
    if not token:
        raise Forbidden("Twilio is not configured here: its requests cannot be verified.")
    url = current_app.config["PUBLIC_BASE_URL"].rstrip("/") + request.path
    if request.query_string:
        url += "?" + request.query_string.decode("latin-1")
    signature = request.headers.get("X-Twilio-Signature", "")
    if not RequestValidator(token).validate(url, request.form, signature):
        raise Forbidden("The request's X-Twilio-Signature does not match.")


def _field(name: str, limit: int = 64) -> str:
    value = request.form.get(name, "")
    if not value or len(value) > limit:
        raise Invalid(f"Twilio's {name} is missing or too long.",
                      errors={name: ["Missing or too long."]})
    return value


@webhooks.post("/status")
def status_callback() -> Response:
    _verify()
    message_id = request.args.get("message_id", type=int)
    if message_id is not None and not 0 < message_id < 2**63:
        message_id = None  # no message of ours: the SID decides
    outbox.apply_status(message_id, _field("MessageSid"), _field("MessageStatus", 16),
                        request.form.get("ErrorCode") or None)
    db.session.commit()
    return Response(status=204)


@webhooks.post("/inbound")
def inbound_message() -> Response:
    _verify()
    reply = inbound.receive(_field("MessageSid"), _field("From", 40),
                            request.form.get("Body", "")[:1600])
    db.session.commit()
    twiml = MessagingResponse()
    if reply:
        twiml.message(reply)
    return Response(str(twiml), mimetype="text/xml")
