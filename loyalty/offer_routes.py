"""HTTP endpoints for offers, coupons and rewards."""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, g, request
from flask.views import MethodView

from crm import alerts
from crm.api import Blueprint
from crm.auth import actor_of, current_key, require
from crm.customers import get_customer
from crm.db import db, utcnow
from crm.idempotency import idempotent_write
from crm.limits import limiter
from crm.pagination import paginate
from crm.schemas import PageArgs
from loyalty import coupons, purchases, rewards
from loyalty.schemas import (
    CouponBatchSchema,
    CouponPageSchema,
    CouponQuerySchema,
    CouponRequestSchema,
    CouponVerdictSchema,
    ExpiringCouponPageSchema,
    ExpiringPointsPageSchema,
    MemberCouponPageSchema,
    OfferPageSchema,
    OfferSchema,
    RewardClaimInSchema,
    RewardClaimSchema,
    RewardPageSchema,
    RewardSchema,
    ValidateCouponSchema,
    WithinDaysSchema,
)

offers_blp = Blueprint("offers", __name__, description="Offers and their coupons")
rewards_blp = Blueprint("rewards", __name__, description="Rewards bought with points")


def _guessed_a_code(response: Response) -> bool:
    """Counts against the guessing limit: an answer naming a code that does not exist."""
    body = response.get_json(silent=True) or {}
    return "not_found" in {body.get("reason"), *(body.get("coupon_reasons") or {}).values()}


def _guess_limit() -> str:
    return current_app.config["COUPON_GUESS_LIMIT"]


def _names_no_code() -> bool:
    """A sale that names no coupon code guesses none: its guessing budget is not looked
    at (one rate-limit check, the caller's own, for the till's everyday sale)."""
    return b'"coupon_codes"' not in request.get_data(cache=True)


def _alert_guessing(limit: Any) -> None:
    """Past the limit: the request gets 429, and the key an alert."""
    key = g.get("api_key")
    subject = f"key:{key.id}" if key is not None else "address:-"
    alerts.raise_alert_apart("coupon_guessing", subject,
                             f"More unknown coupon codes than {_guess_limit()} from {subject}.")


# Unknown codes cost a caller from one budget, at /coupons/validate and in purchases,
# on top of the caller's own limit (RATELIMIT_DEFAULT).
guessing = limiter.shared_limit(_guess_limit, scope="coupon-guess",
                                deduct_when=_guessed_a_code, override_defaults=False,
                                on_breach=_alert_guessing)
guessing_in_sales = limiter.shared_limit(_guess_limit, scope="coupon-guess",
                                         deduct_when=_guessed_a_code,
                                         override_defaults=False,
                                         exempt_when=_names_no_code,
                                         on_breach=_alert_guessing)


@offers_blp.route("/offers")
class Offers(MethodView):
    @require("marketing")
    @offers_blp.arguments(PageArgs, location="query")
    @offers_blp.response(200, OfferPageSchema)
    def get(self, args: dict[str, Any]) -> Any:
        return paginate(coupons.list_offers(), **args)

    @require("marketing")
    @offers_blp.arguments(OfferSchema)
    @offers_blp.response(201, OfferSchema)
    def post(self, data: dict[str, Any]) -> Any:
        offer = coupons.create_offer(data)
        db.session.commit()
        return offer


@offers_blp.route("/offers/<id:offer_id>")
class OfferById(MethodView):
    @require("marketing")
    @offers_blp.response(200, OfferSchema)
    def get(self, offer_id: int) -> Any:
        return coupons.get_offer(offer_id)

    @require("marketing")
    @offers_blp.arguments(OfferSchema(partial=True))
    @offers_blp.response(200, OfferSchema)
    def patch(self, data: dict[str, Any], offer_id: int) -> Any:
        offer = coupons.update_offer(offer_id, data)
        db.session.commit()
        return offer


@offers_blp.route("/offers/<id:offer_id>/coupons")
class OfferCoupons(MethodView):
    @require("marketing")
    @offers_blp.arguments(CouponQuerySchema, location="query")
    @offers_blp.response(200, CouponPageSchema)
    @offers_blp.doc(responses={"200": {"description": "The codes; with ?format=csv, a CSV "
                                      "file of them for printing.", "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/CouponPage"}},
        "text/csv": {"schema": {"type": "string"}}}}})
    def get(self, args: dict[str, Any], offer_id: int) -> Any:
        stmt = coupons.coupons_of(offer_id, args.get("batch"))
        if args["format"] == "csv":
            return Response(coupons.coupons_csv(offer_id, args.get("batch")),
                            mimetype="text/csv",
                            headers={"Content-Disposition":
                                     f"attachment; filename=offer-{offer_id}-coupons.csv"})
        return paginate(stmt, args["page"], args["page_size"])

    @require("marketing")
    @idempotent_write
    @offers_blp.arguments(CouponRequestSchema)
    @offers_blp.response(201, CouponBatchSchema)
    def post(self, data: dict[str, Any], offer_id: int) -> Any:
        return coupons.issue(offer_id, data.get("count", 1), prefix=data["prefix"],
                             length=data["length"], customer_id=data.get("customer_id"))


@offers_blp.route("/coupons/validate")
class ValidateCoupon(MethodView):
    @require("pos", "shop")
    @guessing
    @offers_blp.arguments(ValidateCouponSchema)
    @offers_blp.response(200, CouponVerdictSchema)
    def post(self, data: dict[str, Any]) -> Any:
        return purchases.validate_coupon(data, current_key())


@offers_blp.route("/coupons/expiring")
class ExpiringCoupons(MethodView):
    @require("marketing")
    @offers_blp.arguments(WithinDaysSchema, location="query")
    @offers_blp.response(200, ExpiringCouponPageSchema)
    def get(self, args: dict[str, Any]) -> Any:
        stmt = coupons.coupons_expiring(utcnow().date(), args["within_days"])
        return paginate(stmt, args["page"], args["page_size"])


@offers_blp.route("/loyalty/expiring-points")
class ExpiringPoints(MethodView):
    @require("marketing")
    @offers_blp.arguments(WithinDaysSchema, location="query")
    @offers_blp.response(200, ExpiringPointsPageSchema)
    def get(self, args: dict[str, Any]) -> Any:
        stmt = coupons.points_expiring(utcnow(), args["within_days"])
        return paginate(stmt, args["page"], args["page_size"])


@offers_blp.route("/customers/<id:customer_id>/coupons")
class MemberCoupons(MethodView):
    @require("pos", "shop")
    @offers_blp.response(200, MemberCouponPageSchema)
    def get(self, customer_id: int) -> Any:
        get_customer(customer_id)
        found = coupons.customer_coupons(customer_id, utcnow().date())
        return {"items": [{"code": c.code, "offer": o} for c, o in found]}


@rewards_blp.route("/rewards")
class Rewards(MethodView):
    @require("marketing", "pos", "shop")
    @rewards_blp.arguments(PageArgs, location="query")
    @rewards_blp.response(200, RewardPageSchema)
    def get(self, args: dict[str, Any]) -> Any:
        return paginate(rewards.list_rewards(current_key().scope_list), **args)

    @require("marketing")
    @rewards_blp.arguments(RewardSchema)
    @rewards_blp.response(201, RewardSchema)
    def post(self, data: dict[str, Any]) -> Any:
        reward = rewards.create_reward(data)
        db.session.commit()
        return reward


@rewards_blp.route("/rewards/<id:reward_id>")
class RewardById(MethodView):
    @require("marketing")
    @rewards_blp.arguments(RewardSchema(partial=True))
    @rewards_blp.response(200, RewardSchema)
    def patch(self, data: dict[str, Any], reward_id: int) -> Any:
        reward = rewards.update_reward(reward_id, data)
        db.session.commit()
        return reward


@rewards_blp.route("/rewards/<id:reward_id>/claims")
class RewardClaims(MethodView):
    @require("pos", "shop")
    @idempotent_write
    @rewards_blp.arguments(RewardClaimInSchema)
    @rewards_blp.response(201, RewardClaimSchema)
    def post(self, data: dict[str, Any], reward_id: int) -> Any:
        key = current_key()
        return rewards.claim(reward_id, data["customer_id"], actor_of(key), key,
                             data.get("verification_code"))

