"""HTTP endpoints of the loyalty program: settings, purchases and returns, points."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from crm.api import Blueprint
from crm.auth import actor_of, current_key, require
from crm.db import db
from crm.idempotency import idempotent_write
from crm.pagination import paginate
from crm.schemas import PageArgs
from loyalty import held_returns, points, purchases, receipts, settings
from loyalty.offer_routes import guessing_in_sales
from loyalty.schemas import (
    AdjustmentInSchema,
    AdjustmentSchema,
    ClaimSchema,
    EarningRulePageSchema,
    EarningRuleSchema,
    LedgerPageSchema,
    PointsSchema,
    ProgramSchema,
    PurchaseInSchema,
    PurchaseSchema,
    ReceiptPageSchema,
    ReceiptReturnInSchema,
    ReceiptSchema,
    ReturnInSchema,
    ReturnPageSchema,
    ReturnQuerySchema,
    ReturnSchema,
    TierPageSchema,
    TierSchema,
)

program_blp = Blueprint("loyalty", __name__, description="Program settings, tiers, rules")
purchases_blp = Blueprint("purchases", __name__, description="Sales, claims and returns")
points_blp = Blueprint("points", __name__, description="Members' points")


@program_blp.route("/program")
class ProgramView(MethodView):
    @require("admin")
    @program_blp.response(200, ProgramSchema)
    def get(self) -> Any:
        return settings.program()

    @require("admin")
    @program_blp.arguments(ProgramSchema)
    @program_blp.response(200, ProgramSchema)
    def put(self, data: dict[str, Any]) -> Any:
        row = settings.update_program(data)
        db.session.commit()
        return row


@program_blp.route("/tiers")
class Tiers(MethodView):
    @require("admin")
    @program_blp.response(200, TierPageSchema)
    def get(self) -> Any:
        return {"items": settings.tiers()}

    @require("admin")
    @program_blp.arguments(TierSchema)
    @program_blp.response(201, TierSchema)
    def post(self, data: dict[str, Any]) -> Any:
        tier = settings.create_tier(data)
        db.session.commit()
        return tier


@program_blp.route("/tiers/<id:tier_id>")
class TierById(MethodView):
    @require("admin")
    @program_blp.arguments(TierSchema(partial=True))
    @program_blp.response(200, TierSchema)
    def patch(self, data: dict[str, Any], tier_id: int) -> Any:
        tier = settings.update_tier(tier_id, data)
        db.session.commit()
        return tier

    @require("admin")
    @program_blp.response(204)
    def delete(self, tier_id: int) -> None:
        settings.delete_tier(tier_id)
        db.session.commit()


@program_blp.route("/earning-rules")
class EarningRules(MethodView):
    @require("admin", "marketing")
    @program_blp.arguments(PageArgs, location="query")
    @program_blp.response(200, EarningRulePageSchema)
    def get(self, args: dict[str, Any]) -> Any:
        return paginate(settings.rules(), **args)

    @require("admin", "marketing")
    @program_blp.arguments(EarningRuleSchema)
    @program_blp.response(201, EarningRuleSchema)
    def post(self, data: dict[str, Any]) -> Any:
        rule = settings.create_rule(data)
        db.session.commit()
        return rule


@program_blp.route("/earning-rules/<id:rule_id>")
class EarningRuleById(MethodView):
    @require("admin", "marketing")
    @program_blp.arguments(EarningRuleSchema(partial=True))
    @program_blp.response(200, EarningRuleSchema)
    def patch(self, data: dict[str, Any], rule_id: int) -> Any:
        rule = settings.update_rule(rule_id, data)
        db.session.commit()
        return rule

    @require("admin", "marketing")
    @program_blp.response(204)
    def delete(self, rule_id: int) -> None:
        settings.delete_rule(rule_id)
        db.session.commit()


@purchases_blp.route("/purchases")
class Purchases(MethodView):
    @require("pos", "shop")
    @guessing_in_sales
    @purchases_blp.arguments(PurchaseInSchema)
    @purchases_blp.response(201, PurchaseSchema)
    @purchases_blp.alt_response(200, schema=PurchaseSchema,
                                description="The same receipt posted again: the first answer.")
    def post(self, data: dict[str, Any]) -> Any:
        body, created = purchases.record_purchase(data, current_key())
        db.session.commit()
        return body, 201 if created else 200


@purchases_blp.route("/purchases/<id:purchase_id>")
class PurchaseById(MethodView):
    @require("pos", "shop", "marketing")
    @purchases_blp.response(200, ReceiptSchema)
    def get(self, purchase_id: int) -> Any:
        return receipts.receipt(purchase_id, current_key())


@purchases_blp.route("/purchases/<id:purchase_id>/claim")
class PurchaseClaim(MethodView):
    @require("pos", "shop")
    @purchases_blp.arguments(ClaimSchema)
    @purchases_blp.response(200, PurchaseSchema)
    def post(self, data: dict[str, Any], purchase_id: int) -> Any:
        body = purchases.claim_purchase(purchase_id, data["customer"], current_key())
        db.session.commit()
        return body


@purchases_blp.route("/purchases/<id:purchase_id>/returns")
class PurchaseReturns(MethodView):
    @require("pos", "shop")
    @purchases_blp.arguments(ReturnInSchema)
    @purchases_blp.response(201, ReturnSchema)
    @purchases_blp.alt_response(200, schema=ReturnSchema,
                                description="The same return_id again: the first answer.")
    def post(self, data: dict[str, Any], purchase_id: int) -> Any:
        body, status = purchases.record_return(data, current_key(), purchase_id)
        db.session.commit()
        return body, status


@purchases_blp.route("/returns")
class ReceiptReturns(MethodView):
    @require("pos", "shop", "marketing")
    @purchases_blp.arguments(ReturnQuerySchema, location="query")
    @purchases_blp.response(200, ReturnPageSchema)
    def get(self, args: dict[str, Any]) -> Any:
        status = args.pop("status", None)
        body, code, headers = paginate(held_returns.listed(current_key(), status), **args)
        rows = body["items"]
        codes, money = held_returns.store_codes(rows), held_returns.store_currencies(rows)
        body["items"] = [purchases.return_answer(r, money[r.store_id], codes) for r in rows]
        return body, code, headers

    @require("pos", "shop")
    @purchases_blp.arguments(ReceiptReturnInSchema)
    @purchases_blp.response(201, ReturnSchema)
    @purchases_blp.alt_response(202, schema=ReturnSchema,
                                description="The purchase has not arrived: the return is "
                                "held and applied when it does.")
    @purchases_blp.alt_response(200, schema=ReturnSchema,
                                description="The same return_id again: the first answer.")
    def post(self, data: dict[str, Any]) -> Any:
        body, status = purchases.record_return(data, current_key())
        db.session.commit()
        return body, status


@points_blp.route("/<id:customer_id>/points")
class Points(MethodView):
    @require("pos", "shop")
    @points_blp.response(200, PointsSchema)
    def get(self, customer_id: int) -> Any:
        return points.summary(customer_id)


@points_blp.route("/<id:customer_id>/purchases")
class CustomerPurchases(MethodView):
    @require("pos", "shop", "marketing")
    @points_blp.arguments(PageArgs, location="query")
    @points_blp.response(200, ReceiptPageSchema)
    def get(self, args: dict[str, Any], customer_id: int) -> Any:
        return receipts.history(customer_id, **args)


@points_blp.route("/<id:customer_id>/points/ledger")
class Ledger(MethodView):
    @require("pos", "shop", "admin")
    @points_blp.arguments(PageArgs, location="query")
    @points_blp.response(200, LedgerPageSchema)
    def get(self, args: dict[str, Any], customer_id: int) -> Any:
        return paginate(points.ledger_rows(customer_id), **args)


@points_blp.route("/<id:customer_id>/points/adjustments")
class Adjustments(MethodView):
    @require("admin")
    @idempotent_write
    @points_blp.arguments(AdjustmentInSchema)
    @points_blp.response(201, AdjustmentSchema)
    def post(self, data: dict[str, Any], customer_id: int) -> Any:
        return points.adjust(customer_id, data["points"], data["reason"],
                             actor_of(current_key()))
