"""The second baseline of bench/pos.py: the app's own stack around a sale as small as
bench/bare_app.py's. ``POST /api/v1/bench/purchases`` goes through everything
``POST /api/v1/purchases`` goes through — gunicorn, the request id and log line,
Prometheus metrics, the key check, both rate limits, flask-smorest with the same
marshmallow schemas in and out, the session's transaction and commit — but its body
writes only the purchase row and adds its points to the member's balance (one INSERT,
one UPDATE, like the bare app: no ledger, lots, rules, tiers or coupons).

So bare app -> this -> the real endpoint splits a sale's time into the framework's share
and the loyalty work's share. It writes balances behind the ledger's back: bench/pos.py
runs it after `flask loyalty verify`.

    gunicorn -c gunicorn.conf.py bench.stack_app:app
"""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from sqlalchemy import bindparam

from crm import create_app
from crm.api import Blueprint, api_of
from crm.auth import current_key, require
from crm.db import db, utcnow
from crm.money import to_minor
from crm.sql import Sql, Statement
from loyalty.models import Account, Purchase
from loyalty.offer_routes import guessing_in_sales
from loyalty.schemas import PurchaseInSchema, PurchaseSchema

blp = Blueprint("bench", __name__, description="bench/pos.py's stack baseline")

_P, _A = Purchase.__table__, Account.__table__
_INSERT = Statement(_P.insert().returning(_P.c.id), columns=[
    "store_id", "receipt_id", "request_hash", "customer_id", "occurred_at", "currency",
    "total", "discount", "paid", "points_earned", "points_pending", "points_redeemed",
    "coupons_applied", "returned_paid", "points_reversed", "points_restored", "tax",
    "adjustments", "created_at"])
_UPDATE = Statement(_A.update().where(_A.c.customer_id == bindparam("customer_id"))
                    .values(balance=_A.c.balance + bindparam("points"))
                    .returning(_A.c.balance))


@blp.route("/purchases")
class Purchases(MethodView):
    @require("pos", "shop")
    @guessing_in_sales
    @blp.arguments(PurchaseInSchema)
    @blp.response(201, PurchaseSchema)
    def post(self, data: dict[str, Any]) -> Any:
        store, customer_id = current_key().store, data["customer"]["id"]
        total = to_minor(data["total"], data["currency"])
        points = total // 100 - (data.get("redeem_points") or 0)
        with Sql() as sql:
            purchase_id = sql.run(_INSERT, {
                "store_id": store.id, "receipt_id": data["receipt_id"], "request_hash": "",
                "customer_id": customer_id, "occurred_at": data["occurred_at"],
                "currency": data["currency"], "total": total, "discount": 0, "paid": total,
                "points_earned": total // 100, "points_pending": 0, "points_redeemed": 0,
                "coupons_applied": [], "returned_paid": 0, "points_reversed": 0,
                "points_restored": 0, "tax": 0, "adjustments": 0,
                "created_at": utcnow()}).scalar()
            balance = sql.run(_UPDATE, {"points": points, "customer_id": customer_id,
                                        "updated_at": utcnow()}).scalar()
        db.session.commit()
        return {"id": purchase_id, "store_code": store.code, "receipt_id": data["receipt_id"],
                "customer_id": customer_id, "occurred_at": data["occurred_at"],
                "currency": data["currency"], "total": data["total"], "discount": "0",
                "paid": data["total"], "points_earned": total // 100, "points_pending": 0,
                "points_redeemed": data.get("redeem_points") or 0, "coupons_applied": [],
                "balance": balance, "tier": None}


app = create_app()
api_of(app).register_blueprint(blp, url_prefix="/api/v1/bench")
