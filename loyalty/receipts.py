"""Receipts and order history: a sale with its lines, returns (and where each was taken
back), points and coupons, for a till finding the sale it takes back and the shop's
"my orders". A page of sales is read in three queries whatever its size: the sales with
their store, their lines, their returns with the store that took each back."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import aliased

from crm.db import db
from crm.errors import Forbidden, NotFound
from crm.keys import Caller
from crm.models import Store
from crm.money import to_amount
from crm.pagination import paginate
from loyalty import points, settings
from loyalty.models import Purchase, PurchaseLine, PurchaseReturn

_Taken = aliased(Store)


def _sales(purchases: list[tuple[Purchase, str]]) -> list[dict[str, Any]]:
    """The receipts of ``purchases`` (each with its store's code), in their order."""
    ids = [p.id for p, _ in purchases]
    lines: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
    returns: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
    currency = {p.id: p.currency for p, _ in purchases}
    if ids:
        for line in db.session.scalars(select(PurchaseLine).where(
                PurchaseLine.purchase_id.in_(ids)).order_by(PurchaseLine.id)):
            money = currency[line.purchase_id]
            lines[line.purchase_id].append({
                "sku": line.sku, "category": line.category, "quantity": line.quantity,
                "unit_price": to_amount(line.unit_price, money),
                "amount": to_amount(line.amount, money), "earns": line.earns,
                "returned_quantity": line.returned_quantity})
        for ret, taken in db.session.execute(
                select(PurchaseReturn, _Taken.code)
                .join(_Taken, _Taken.id == PurchaseReturn.taken_store_id)
                .where(PurchaseReturn.purchase_id.in_(ids)).order_by(PurchaseReturn.id)):
            money = currency[ret.purchase_id]
            returns[ret.purchase_id].append({
                "id": ret.id, "return_id": ret.return_id, "status": ret.status,
                "taken_at_store": taken, "taken_by_key": ret.taken_key_id,
                "amount": to_amount(ret.returned_paid, money),
                "points_reversed": ret.points_reversed,
                "points_restored": ret.points_restored,
                "points_uncollected": ret.points_uncollected,
                "created_at": ret.created_at, "applied_at": ret.applied_at})
    return [{
        "id": p.id, "store_code": code, "receipt_id": p.receipt_id,
        "customer_id": p.customer_id, "occurred_at": p.occurred_at, "currency": p.currency,
        "total": to_amount(p.total, p.currency), "tax": to_amount(p.tax, p.currency),
        "adjustments": to_amount(p.adjustments, p.currency),
        "discount": to_amount(p.discount, p.currency), "paid": to_amount(p.paid, p.currency),
        "returned": to_amount(p.returned_paid, p.currency),
        "points_earned": p.points_earned, "points_pending": p.points_pending,
        "points_redeemed": p.points_redeemed, "points_reversed": p.points_reversed,
        "points_restored": p.points_restored, "coupons_applied": p.coupons_applied or [],
        "lines": lines[p.id], "returns": returns[p.id],
    } for p, code in purchases]


def _with_store() -> Select[tuple[Purchase, str]]:
    return select(Purchase, Store.code).join(Store, Store.id == Purchase.store_id)


def receipt(purchase_id: int, key: Caller) -> dict[str, Any]:
    """One sale. A till reads any store's sales while returns may be taken anywhere
    (it needs the sale it takes back), else only its own store's."""
    found = db.session.execute(_with_store().where(Purchase.id == purchase_id)).first()
    if found is None:
        raise NotFound(f"No purchase has the id {purchase_id}.")
    purchase, code = found
    if (key.store is not None and purchase.store_id != key.store.id
            and not settings.snapshot().program.returns_anywhere):
        raise Forbidden(f"This key belongs to store {key.store.code}; the purchase was "
                        f"made in {code}.")
    return _sales([(purchase, code)])[0]


def history(customer_id: int, page: int, page_size: int) -> tuple[dict[str, Any], int, dict]:
    """A member's sales, newest first (ix_purchases_customer_occurred), a page at a time;
    a record merged into another answers the survivor's."""
    member = points.member(customer_id)
    stmt = (_with_store().where(Purchase.customer_id == member)
            .order_by(Purchase.occurred_at.desc(), Purchase.id.desc()))
    body, status, headers = paginate(stmt, page, page_size)
    body["items"] = _sales([tuple(row.values()) for row in body["items"]])  # mappings
    return body, status, headers
