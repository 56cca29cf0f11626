"""The product catalogue, shared by the shops and the web store: synced in batches of up
to 1,000 by the shop (each item answered on its own, like the member sync), read by
anyone. Sales never depend on it: a till may sell a sku the catalogue does not know."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError
from sqlalchemy import Select, bindparam, select, update

from crm.db import db, utcnow
from crm.errors import NotFound
from crm.money import InvalidAmount, to_minor
from crm.sql import bulk_insert
from loyalty.models import Product

FIELDS = ("name", "category", "price", "currency", "active", "image_url")


def sync_products(items: list[Any]) -> list[dict[str, Any]]:
    """Create or update each product; answer one result per item, in order:
    ``created``, ``updated``, ``unchanged`` or ``invalid`` (with ``detail``). A sku given
    twice in a batch: its last item wins, the earlier ones are ``unchanged``."""
    from loyalty.schemas import ProductSchema

    schema = ProductSchema()
    results: list[dict[str, Any]] = []
    parsed: dict[str, tuple[int, dict[str, Any]]] = {}
    for index, raw in enumerate(items):
        sku = raw.get("sku") if isinstance(raw, dict) else None
        try:
            data = schema.load(raw)
            data["price"] = to_minor(data["price"], data["currency"])
        except ValidationError as e:
            results.append(_result(sku, "invalid", e.messages))
            continue
        except InvalidAmount as e:
            results.append(_result(sku, "invalid", {"price": [str(e)]}))
            continue
        data.setdefault("active", True)
        data.setdefault("image_url", None)
        if data["sku"] in parsed:
            results[parsed[data["sku"]][0]]["result"] = "unchanged"
        parsed[data["sku"]] = (index, data)
        results.append(_result(data["sku"], "pending"))
    known = {p.sku: p for p in db.session.scalars(
        select(Product).where(Product.sku.in_(list(parsed))))} if parsed else {}
    now = utcnow()
    new, changed = [], []
    for sku, (index, data) in parsed.items():
        current = known.get(sku)
        if current is None:
            new.append({**data, "created_at": now, "updated_at": now})
            results[index]["result"] = "created"
        elif any(getattr(current, f) != data[f] for f in FIELDS):
            changed.append({"b_sku": sku, **{f: data[f] for f in FIELDS}, "updated_at": now})
            results[index]["result"] = "updated"
        else:
            results[index]["result"] = "unchanged"
    bulk_insert(Product.__table__, new)
    if changed:
        db.session.connection().execute(
            update(Product.__table__).where(Product.__table__.c.sku == bindparam("b_sku")),
            changed)
    db.session.expire_all()
    return results


def _result(sku: Any, result: str, detail: Any = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"sku": sku if isinstance(sku, str) else None, "result": result}
    if detail is not None:
        answer["detail"] = detail
    return answer


def list_products(category: str | None = None, q: str | None = None) -> Select[tuple[Product]]:
    stmt = select(Product).order_by(Product.sku)
    if category:
        stmt = stmt.where(Product.category == category)
    if q:
        pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stmt = stmt.where(Product.name.ilike(pattern, escape="\\")
                          | Product.sku.ilike(pattern, escape="\\"))
    return stmt


def get_product(sku: str) -> Product:
    product = db.session.get(Product, sku)
    if product is None:
        raise NotFound(f"No product has the sku {sku!r}.")
    return product
