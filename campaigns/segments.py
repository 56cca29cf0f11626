"""Segments: saved rules (``campaigns.segment_rules``), their members as one SQL query,
a preview (count and sample), and RFM scores and co-purchases refreshed by a job."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, delete, func, insert, literal, select
from sqlalchemy.sql.elements import ColumnElement

from campaigns.models import CategoryAffinity, CustomerRfm, Segment
from campaigns.segment_rules import check, compile_rule
from crm import audit
from crm.db import db, utcnow
from crm.errors import get_or_404
from crm.models import Customer
from loyalty import settings
from loyalty.models import Product, Purchase, PurchaseLine

SAMPLE = 20
RFM_DAYS = 365


def checked(rule: Any) -> dict[str, Any]:
    check(rule, settings.program().currency)  # raises Invalid naming the bad node
    return rule


def create_segment(data: dict[str, Any], actor: str | None = None) -> Segment:
    """``actor``: who, when not the request's API key (a console user)."""
    segment = Segment(name=data["name"], rule=checked(data["rule"]))
    db.session.add(segment)
    db.session.flush()
    audit.record("create", "segment", segment.id, after=_audited(segment), actor=actor)
    return segment


def update_segment(segment_id: int, data: dict[str, Any],
                   actor: str | None = None) -> Segment:
    segment = get_or_404(Segment, segment_id, "segment")
    before = _audited(segment)
    if "rule" in data:
        segment.rule = checked(data["rule"])
    if "name" in data:
        segment.name = data["name"]
    db.session.flush()
    names, old, new = audit.changes(before, _audited(segment))
    if names:
        audit.record("update", "segment", segment.id, fields=names, before=old, after=new,
                     actor=actor)
    return segment


def _audited(segment: Segment) -> dict[str, Any]:
    """A segment's name and rule (conditions on groups of people, never one person)."""
    return {"name": segment.name, "rule": segment.rule}


def known_categories(limit: int = 500) -> list[str]:
    """The categories a rule can name: the catalogue's and those sales lines carry (read
    by a loose index scan over ``ix_purchase_lines_category``: one index probe per
    category, not a pass over every line)."""
    walk = select(func.min(PurchaseLine.category).label("category")).cte(
        "categories", recursive=True)
    step = select(select(func.min(PurchaseLine.category))
                  .where(PurchaseLine.category > walk.c.category)
                  .scalar_subquery()).where(walk.c.category.is_not(None))
    walk = walk.union_all(step)
    sold = select(walk.c.category).where(walk.c.category.is_not(None)).limit(limit)
    catalogue = select(Product.category).distinct().order_by(Product.category).limit(limit)
    found = set(db.session.scalars(sold)) | set(db.session.scalars(catalogue))
    return sorted(found)[:limit]


def list_segments() -> Select[tuple[Segment]]:
    return select(Segment).order_by(Segment.id)


def condition(rule: dict[str, Any], now: datetime | None = None) -> ColumnElement[bool]:
    """A stored rule as a condition on customers."""
    return compile_rule(check(rule, settings.program().currency), now or utcnow())


def member_condition(segment_id: int) -> ColumnElement[bool]:
    """``GET /customers?segment_id=``: the segment's members."""
    return condition(get_or_404(Segment, segment_id, "segment").rule)


def members(rule: dict[str, Any], now: datetime | None = None) -> Select[tuple[int]]:
    return select(Customer.id).where(condition(rule, now))


def count(rule: dict[str, Any], now: datetime | None = None) -> int:
    return _count(condition(rule, now))


def _count(where: ColumnElement[bool]) -> int:
    return db.session.scalar(select(func.count()).select_from(Customer).where(where)) or 0


def preview(rule: dict[str, Any]) -> dict[str, Any]:
    """Count and sample of a rule (checked here: an unsaved one is a 422 naming the
    bad node)."""
    where = condition(rule)
    sample = db.session.scalars(select(Customer).where(where)
                                .order_by(Customer.id).limit(SAMPLE)).all()
    return {"count": _count(where), "sample": sample}


def refresh_insights(now: datetime | None = None) -> dict[str, int]:
    """Recompute RFM quintiles and category co-purchases from the last year's purchases,
    each with one INSERT ... SELECT (ntile over the customers who bought)."""
    now = now or utcnow()
    since = now - timedelta(days=RFM_DAYS)
    per_customer = (select(Purchase.customer_id.label("customer_id"),
                           func.max(Purchase.occurred_at).label("last_purchase_at"),
                           func.count(Purchase.id).label("frequency"),
                           func.sum(Purchase.paid - Purchase.returned_paid).label("monetary"))
                    .where(Purchase.customer_id.is_not(None), Purchase.occurred_at >= since)
                    .group_by(Purchase.customer_id).subquery())
    scored = select(
        per_customer.c.customer_id, per_customer.c.last_purchase_at,
        per_customer.c.frequency, per_customer.c.monetary,
        func.ntile(5).over(order_by=(per_customer.c.last_purchase_at,
                                     per_customer.c.customer_id)),
        func.ntile(5).over(order_by=(per_customer.c.frequency, per_customer.c.customer_id)),
        func.ntile(5).over(order_by=(per_customer.c.monetary, per_customer.c.customer_id)),
        literal(now, CustomerRfm.computed_at.type))
    db.session.execute(delete(CustomerRfm))
    db.session.execute(insert(CustomerRfm).from_select(
        ["customer_id", "last_purchase_at", "frequency", "monetary", "r", "f", "m",
         "computed_at"], scored))
    bought = (select(Purchase.customer_id, PurchaseLine.category)
              .join(PurchaseLine, PurchaseLine.purchase_id == Purchase.id)
              .where(Purchase.customer_id.is_not(None), Purchase.occurred_at >= since,
                     PurchaseLine.category.is_not(None)).distinct().subquery())
    other = bought.alias("other")
    pairs = (select(bought.c.category, other.c.category, func.count())
             .join(other, (other.c.customer_id == bought.c.customer_id)
                   & (other.c.category != bought.c.category))
             .group_by(bought.c.category, other.c.category))
    db.session.execute(delete(CategoryAffinity))
    db.session.execute(insert(CategoryAffinity).from_select(
        ["category", "other", "customers"], pairs))
    db.session.flush()
    return {"scored": db.session.scalar(select(func.count()).select_from(CustomerRfm)) or 0,
            "category_pairs": db.session.scalar(
                select(func.count()).select_from(CategoryAffinity)) or 0}
