"""A customer's history in time order: each package adds a source, a select of
``(at, type, ref_id, label, amount, currency, points)`` rows for some customer ids; the
sources are joined with UNION ALL and paginated in the database."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import (
    BigInteger,
    Integer,
    Select,
    String,
    case,
    cast,
    literal,
    null,
    select,
    union_all,
)

from crm.models import AuditLog, ConsentEvent, CustomerMerge
from crm.money import to_amount
from crm.pagination import paginate

TimelineSource = Callable[[list[int]], list[Select[Any]]]
timeline_sources: list[TimelineSource] = []
# Labels whose end is sealed: type -> a function of the page's ref_ids of that type
# answering {ref_id: the end of its label}, opened.
TimelineTexts = Callable[[list[int]], dict[int, str]]
timeline_texts: dict[str, TimelineTexts] = {}


def row(at: Any, kind: str, ref_id: Any, label: Any, amount: Any = None,
        currency: Any = None, points: Any = None) -> list[Any]:
    """The columns every source selects, in order."""
    return [at.label("at"), literal(kind).label("type"), ref_id.label("ref_id"),
            cast(label, String).label("label"),
            cast(amount if amount is not None else null(), BigInteger).label("amount"),
            cast(currency if currency is not None else null(), String).label("currency"),
            cast(points if points is not None else null(), Integer).label("points")]


def crm_sources(ids: list[int]) -> list[Select[Any]]:
    granted = ConsentEvent.channel + case((ConsentEvent.granted, literal(" granted")),
                                          else_=literal(" withdrawn"))
    return [
        select(*row(ConsentEvent.created_at, "consent", ConsentEvent.id,
                    granted + literal(" by ") + ConsentEvent.source))
        .where(ConsentEvent.customer_id.in_(ids)),
        select(*row(CustomerMerge.created_at, "merge", CustomerMerge.id,
                    literal("merged customer ") + cast(CustomerMerge.source_id, String)
                    + literal(" into ") + cast(CustomerMerge.survivor_id, String)))
        .where(CustomerMerge.survivor_id.in_(ids) | CustomerMerge.source_id.in_(ids)),
        select(*row(AuditLog.created_at, "audit", AuditLog.id,
                    AuditLog.action + literal(" by ") + AuditLog.actor))
        .where(AuditLog.object_type == "customer",
               AuditLog.object_id.in_([str(i) for i in ids]),
               AuditLog.action.in_(("export", "erase"))),  # the rest have their own rows
    ]


def timeline(ids: list[int]) -> Select[Any]:
    parts = crm_sources(ids) + [part for source in timeline_sources for part in source(ids)]
    merged = union_all(*parts).subquery()
    return select(merged).order_by(merged.c.at.desc(), merged.c.type, merged.c.ref_id.desc())


def page(ids: list[int], page: int, page_size: int) -> tuple[dict[str, Any], int, dict]:

    body, status, headers = paginate(timeline(ids), page, page_size)
    body["items"] = [dict(item) for item in body["items"]]
    for kind, texts in timeline_texts.items():
        refs = [item["ref_id"] for item in body["items"] if item["type"] == kind]
        if refs:
            ends = texts(refs)
            for item in body["items"]:
                if item["type"] == kind:
                    item["label"] = f"{item['label']}{ends.get(item['ref_id'], '')}"
    body["items"] = [{**item, "amount": to_amount(item["amount"], item["currency"])
                      if item["amount"] is not None else None} for item in body["items"]]
    return body, status, headers

