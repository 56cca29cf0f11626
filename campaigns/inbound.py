"""SMS that customers send us: opt-out and opt-in keywords, HELP, survey answers, and
anything else, which is kept for the customer's timeline. Twilio may deliver the same
message twice; its SID makes the second time a no-op with the same reply."""

from __future__ import annotations

import re

from flask import current_app
from sqlalchemy import select

from campaigns import surveys
from campaigns.models import InboundMessage
from crm.consent import record_consent
from crm.customers import region
from crm.db import db
from crm.identifiers import InvalidIdentifier, normalize
from crm.models import Customer, CustomerIdentifier, identifier_lookup

# Single-word replies only, as carriers and Twilio treat them.
OPT_OUT = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
OPT_IN = frozenset({"START", "YES", "UNSTOP"})
HELP = frozenset({"HELP", "INFO"})


def keyword(body: str) -> str:
    """The reply as a keyword: one word, case and surrounding punctuation ignored."""
    return re.sub(r"^\W+|\W+$", "", body.strip()).upper()


def customer_by_phone(number: str) -> Customer | None:
    try:
        phone = normalize("phone", number, region())
    except InvalidIdentifier:
        return None
    return db.session.scalar(select(Customer).join(CustomerIdentifier).where(
        CustomerIdentifier.kind == "phone",
        CustomerIdentifier.lookup == identifier_lookup("phone", phone)))


def receive(sid: str, from_number: str, body: str) -> str | None:
    """Act on an inbound SMS; the text to reply with, or None for no reply."""
    seen = db.session.scalar(select(InboundMessage).where(InboundMessage.provider_sid == sid))
    if seen is not None:
        return seen.reply
    customer = customer_by_phone(from_number)
    word = keyword(body)
    config = current_app.config
    reply: str | None = None
    if word in OPT_OUT:
        kind = "opt_out"  # Twilio answers opt-outs itself; a reply would be blocked
        if customer is not None:
            record_consent(customer, {"sms": False}, source=f"sms:{word}")
    elif word in OPT_IN:
        kind, reply = "opt_in", config["SMS_OPT_IN_TEXT"]
        if customer is not None:
            record_consent(customer, {"sms": True}, source=f"sms:{word}")
    elif word in HELP:
        kind, reply = "help", config["SMS_HELP_TEXT"]
    else:
        reply = surveys.answer_by_sms(customer.id, body) if customer is not None else None
        kind = "survey" if reply is not None else "other"
    db.session.add(InboundMessage(provider_sid=sid, from_number=from_number[:20],
                                  customer_id=customer.id if customer else None,
                                  body=body, kind=kind, reply=reply))
    db.session.flush()
    return reply
