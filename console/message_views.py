"""Messages: the SMS outbox with the API's filters (status, purpose, campaign,
customer), a page at a time, and each message on its own page with its delivery
history (Twilio's status reports). Phone numbers are masked except to admins."""

from __future__ import annotations

import json
from typing import Any

from flask import abort, render_template, request
from marshmallow import ValidationError

from campaigns import campaign_settings, outbox
from campaigns.models import MESSAGE_STATUSES, PURPOSES
from campaigns.schemas import MessageQuerySchema
from console.web import bp, can
from crm.db import db
from crm.errors import DomainError
from crm.pagination import paginate
from crm.schemas import mask_phone

PAGE_SIZE = 25
QUERY = MessageQuerySchema()
FILTERS = ("status", "purpose", "campaign_id", "customer_id")


def shown_number(number: str | None) -> str:
    """The number as this user may see it: whole for admins, else its last four digits."""
    if not number:
        return "—"
    return number if can("admin") else (mask_phone(number) or "—")


def message_filters(args: Any) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The outbox filters as the API reads them (its schema): the valid ones, and an
    error per field for the others (left out)."""
    raw = {name: args.get(name, "").strip() for name in (*FILTERS, "page")}
    raw = {name: value for name, value in raw.items() if value}
    try:
        return QUERY.load(raw), {}
    except ValidationError as e:
        errors = {str(k): [str(m) for m in v] for k, v in e.messages.items()}
        good = {k: v for k, v in raw.items() if k not in errors}
        errors.pop("page", None)  # a page number out of range: the first page
        return QUERY.load(good), errors


@bp.get("/messages")
def messages_list() -> Any:
    filters, errors = message_filters(request.args)
    page = filters.pop("page")
    filters.pop("page_size")
    body, _, headers = paginate(outbox.list_messages(filters), page, PAGE_SIZE)
    query = {k: v for k, v in request.args.items()
             if k in FILTERS and v and k not in errors}
    return render_template("console/messages.html", items=body["items"],
                           meta=json.loads(headers["X-Pagination"]), errors=errors,
                           args=request.args, query=query, statuses=MESSAGE_STATUSES,
                           purposes=PURPOSES, number=shown_number,
                           campaigns=_campaign_names()), 422 if errors else 200


def _campaign_names() -> dict[int, str]:
    return {c.id: c.name for c in db.session.scalars(campaign_settings.list_campaigns())}


@bp.get("/messages/<int:message_id>")
def message_detail(message_id: int) -> Any:
    try:
        message = outbox.get_message(message_id)
    except DomainError:
        abort(404)
    return render_template("console/message.html", m=message,
                           history=outbox.delivery_history(message_id), number=shown_number)
