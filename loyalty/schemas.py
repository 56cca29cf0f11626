"""The loyalty API's shapes."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from marshmallow import Schema, ValidationError, fields, post_dump, validate, validates_schema

from crm.money import to_amount
from crm.schemas import (
    Amount,
    CustomerRefSchema,
    DecimalString,
    Moment,
    PageArgs,
    Text,
    _currency,
    not_in_the_future,
    page_of,
)
from loyalty.models import CAP_PERIODS, OFFER_KINDS, ROUNDING
from loyalty.settings import program

MAX_POINTS = 1_000_000_000
RECEIPT = validate.Regexp(r"^[\x21-\x7e]{1,64}\Z",
                          error="1 to 64 printable characters, no spaces.")


class ProgramSchema(Schema):
    currency = fields.String(validate=_currency,
                             metadata={"description": "Currency of spend thresholds."})
    points_per_unit = DecimalString(maximum="10000",
                                    metadata={"description": "Points per currency unit paid."})
    point_value = DecimalString(maximum="10000", exclusive_minimum=True,
                                metadata={"description": "Money value of one point."})
    rounding = fields.String(validate=validate.OneOf(ROUNDING))
    pending_days = fields.Integer(strict=True, validate=validate.Range(0, 365))
    expiry_days = fields.Integer(strict=True, validate=validate.Range(0, 3650),
                                 metadata={"description": "0: points never expire."})
    allow_negative = fields.Boolean()
    tier_grace_days = fields.Integer(strict=True, validate=validate.Range(0, 365))
    updated_at = fields.AwareDateTime(dump_only=True)


class _ProgramMoney(Schema):
    """Amounts in the program's currency: minor units inside, decimal strings outside."""

    MONEY_FIELDS: tuple[str, ...] = ()

    @post_dump
    def _format(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        for name in self.MONEY_FIELDS:
            if isinstance(data.get(name), str):
                data[name] = to_amount(int(data[name]), program().currency)
        return data


class TierSchema(_ProgramMoney):
    MONEY_FIELDS = ("threshold_spend",)

    id = fields.Integer(dump_only=True)
    name = Text(required=True, validate=validate.Length(1, 50))
    threshold_points = fields.Integer(strict=True, allow_none=True,
                                      validate=validate.Range(0, MAX_POINTS))
    threshold_spend = Amount(allow_none=True,
                             metadata={"description": "In the program's currency."})
    window_days = fields.Integer(strict=True, load_default=365,
                                 validate=validate.Range(1, 3650))
    multiplier = DecimalString(maximum="100", load_default=Decimal(1))
    benefits = fields.List(fields.String(validate=validate.Length(1, 200)),
                           load_default=list, validate=validate.Length(max=50))


class EarningRuleSchema(_ProgramMoney):
    MONEY_FIELDS = ("min_spend",)

    id = fields.Integer(dump_only=True)
    name = Text(required=True, validate=validate.Length(1, 100))
    kind = fields.String(required=True, validate=validate.OneOf(("multiplier", "fixed")))
    value = DecimalString(maximum="1000000", required=True,
                          metadata={"description": "Multiplier (\"2\") or fixed points."})
    skus = fields.List(fields.String(validate=validate.Length(1, 64)), load_default=list)
    categories = fields.List(fields.String(validate=validate.Length(1, 64)),
                             load_default=list)
    store_codes = fields.List(fields.String(validate=validate.Length(1, 32)),
                              load_default=list)
    weekdays = fields.List(fields.Integer(strict=True, validate=validate.Range(0, 6)),
                           load_default=list, metadata={"description": "0 is Monday."})
    valid_from = Moment(allow_none=True)
    valid_to = Moment(allow_none=True)
    first_purchase = fields.Boolean(load_default=False)
    birthday_month = fields.Boolean(load_default=False)
    min_spend = Amount(allow_none=True, metadata={"description": "In the program's currency."})
    cap_points = fields.Integer(strict=True, allow_none=True,
                                validate=validate.Range(1, MAX_POINTS))
    cap_period = fields.String(allow_none=True, validate=validate.OneOf(CAP_PERIODS))
    active = fields.Boolean(load_default=True)


class LineSchema(Schema):
    sku = fields.String(required=True, validate=validate.Length(1, 64))
    category = fields.String(validate=validate.Length(1, 64))
    quantity = fields.Integer(strict=True, required=True, validate=validate.Range(1, 100_000))
    unit_price = Amount(required=True)
    earns = fields.Boolean(load_default=True, metadata={
        "description": "false for lines that never earn: rewards, gift cards, deposits."})


class PurchaseInSchema(Schema):
    store_code = fields.String(validate=validate.Length(1, 32),
                               metadata={"description": "Implied by a till's key."})
    receipt_id = fields.String(required=True, validate=RECEIPT)
    customer = fields.Nested(CustomerRefSchema)
    occurred_at = Moment(required=True, validate=not_in_the_future)
    currency = fields.String(required=True, validate=_currency)
    total = Amount(required=True)
    lines = fields.List(fields.Nested(LineSchema), required=True,
                        validate=validate.Length(1, 1000))
    redeem_points = fields.Integer(strict=True, load_default=0,
                                   validate=validate.Range(0, MAX_POINTS))
    coupon_codes = fields.List(fields.String(validate=validate.Length(1, 40)),
                               load_default=list, validate=validate.Length(max=10))


class PurchaseSchema(Schema):
    id = fields.Integer()
    store_code = fields.String()
    receipt_id = fields.String()
    customer_id = fields.Integer(allow_none=True)
    occurred_at = fields.AwareDateTime()
    currency = fields.String()
    total = fields.String()
    discount = fields.String()
    paid = fields.String()
    points_earned = fields.Integer()
    points_pending = fields.Integer()
    points_redeemed = fields.Integer()
    coupons_applied = fields.List(fields.Raw())
    balance = fields.Integer(allow_none=True)
    tier = fields.String(allow_none=True)


class ClaimSchema(Schema):
    customer = fields.Nested(CustomerRefSchema, required=True)


class ReturnLineSchema(Schema):
    sku = fields.String(required=True, validate=validate.Length(1, 64))
    quantity = fields.Integer(strict=True, required=True, validate=validate.Range(1, 100_000))


class ReturnInSchema(Schema):
    return_id = fields.String(required=True, validate=RECEIPT)
    lines = fields.List(fields.Nested(ReturnLineSchema), validate=validate.Length(1, 1000))
    amount = Amount()

    @validates_schema
    def _one_way(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("lines") and data.get("amount") is not None:
            raise ValidationError("Return by lines or by amount, not both.", "amount")


class ReceiptReturnInSchema(ReturnInSchema):
    """A return named by its receipt: held until the purchase arrives if it has not."""

    store_code = fields.String(validate=validate.Length(1, 32))
    receipt_id = fields.String(required=True, validate=RECEIPT)


class ReturnSchema(Schema):
    id = fields.Integer()
    return_id = fields.String()
    purchase_id = fields.Integer(allow_none=True)
    receipt_id = fields.String()
    status = fields.String(metadata={"description": "applied, or held until the purchase"})
    amount = fields.String()
    points_reversed = fields.Integer()
    points_restored = fields.Integer()
    points_uncollected = fields.Integer()
    balance = fields.Integer(allow_none=True)
    note = fields.String(allow_none=True)


class NextTierSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    points_needed = fields.Integer()
    spend_needed = fields.String()


class MemberTierSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    since = fields.AwareDateTime(allow_none=True)
    downgrade_at = fields.AwareDateTime(allow_none=True)


class ExpiringSchema(Schema):
    points = fields.Integer()
    on = fields.String()


class PointsSchema(Schema):
    customer_id = fields.Integer()
    balance = fields.Integer()
    pending = fields.Integer()
    lifetime = fields.Integer()
    debt = fields.Integer()
    tier = fields.Nested(MemberTierSchema, allow_none=True)
    next_tier = fields.Nested(NextTierSchema, allow_none=True)
    expiring = fields.List(fields.Nested(ExpiringSchema))


class LedgerEntrySchema(Schema):
    id = fields.Integer()
    kind = fields.String()
    cause = fields.String()
    points = fields.Integer()
    pending = fields.Integer()
    balance_after = fields.Integer()
    purchase_id = fields.Integer(allow_none=True)
    return_id = fields.Integer(allow_none=True)
    reason = fields.String(allow_none=True)
    actor = fields.String(allow_none=True)
    occurred_at = fields.AwareDateTime()
    created_at = fields.AwareDateTime()


class AdjustmentInSchema(Schema):
    points = fields.Integer(strict=True, required=True,
                            validate=[validate.Range(-MAX_POINTS, MAX_POINTS),
                                      validate.NoneOf([0], error="Not zero.")])
    reason = Text(required=True, validate=validate.Length(1, 500))


class AdjustmentSchema(Schema):
    customer_id = fields.Integer()
    points = fields.Integer()
    reason = fields.String()
    balance = fields.Integer()


TierPageSchema = page_of(TierSchema, "TierPage")
EarningRulePageSchema = page_of(EarningRuleSchema, "EarningRulePage")
LedgerPageSchema = page_of(LedgerEntrySchema, "LedgerPage")


class OfferSchema(Schema):
    id = fields.Integer(dump_only=True)
    name = Text(required=True, validate=validate.Length(1, 100))
    kind = fields.String(required=True, validate=validate.OneOf(OFFER_KINDS))
    value = DecimalString(required=True, maximum="1000000000", metadata={
        "description": "percent: 10 for 10%; amount: money off; free_item: how many "
        "items (the cheapest eligible); points_multiplier: 2; bonus_points: points."})
    currency = fields.String(validate=_currency,
                             metadata={"description": "Default: the program's."})
    min_spend = Amount(allow_none=True)
    skus = fields.List(fields.String(validate=validate.Length(1, 64)), load_default=list)
    categories = fields.List(fields.String(validate=validate.Length(1, 64)),
                             load_default=list)
    valid_from = fields.Date(allow_none=True, metadata={
        "description": "First day, in the store's time zone."})
    valid_to = fields.Date(allow_none=True, metadata={
        "description": "Last day (included), in the store's time zone."})
    per_customer_limit = fields.Integer(strict=True, allow_none=True,
                                        validate=validate.Range(1, 1_000_000))
    total_limit = fields.Integer(strict=True, allow_none=True,
                                 validate=validate.Range(1, 1_000_000_000))
    budget = Amount(allow_none=True, metadata={"description": "Cap on all discount given."})
    stackable = fields.Boolean(load_default=False)
    active = fields.Boolean(load_default=True)
    uses = fields.Integer(dump_only=True)
    spent = fields.String(dump_only=True)

    @post_dump(pass_original=True)
    def _money(self, data: dict[str, Any], offer: Any, **kwargs: Any) -> dict[str, Any]:
        for name in ("min_spend", "budget", "spent"):
            value = getattr(offer, name)
            data[name] = None if value is None else to_amount(value, offer.currency)
        return data


class CouponRequestSchema(Schema):
    count = fields.Integer(strict=True, validate=validate.Range(1, 100_000))
    prefix = fields.String(load_default="", validate=validate.Regexp(
        r"^[A-Z0-9]{0,10}-?\Z", error="Up to 10 capital letters or digits, and a dash."))
    length = fields.Integer(strict=True, load_default=10, validate=validate.Range(6, 20))
    customer_id = fields.Integer(strict=True, validate=validate.Range(1, 2**63 - 1))

    @validates_schema
    def _one(self, data: dict[str, Any], **kwargs: Any) -> None:
        if ("count" in data) == ("customer_id" in data):
            raise ValidationError("Give count (a batch) or customer_id (one personal coupon).")


class CouponBatchSchema(Schema):
    offer_id = fields.Integer()
    batch = fields.String()
    count = fields.Integer()
    codes = fields.List(fields.String(), metadata={
        "description": "The codes, when at most 1000; else list them by batch."})


class CouponSchema(Schema):
    code = fields.String()
    offer_id = fields.Integer()
    batch = fields.String(allow_none=True)
    customer_id = fields.Integer(allow_none=True)
    uses = fields.Integer()
    max_uses = fields.Integer()
    state = fields.Function(lambda c: "used" if c.uses >= c.max_uses else "active")
    created_at = fields.AwareDateTime()


class CouponQuerySchema(PageArgs):
    batch = fields.String(validate=validate.Length(1, 32))
    format = fields.String(load_default="json", validate=validate.OneOf(("json", "csv")))


class BasketSchema(Schema):
    total = Amount(required=True)
    currency = fields.String(validate=_currency)
    lines = fields.List(fields.Nested(LineSchema), required=True,
                        validate=validate.Length(1, 1000))


class ValidateCouponSchema(Schema):
    code = fields.String(required=True, validate=validate.Length(1, 40))
    with_codes = fields.List(fields.String(validate=validate.Length(1, 40)),
                             load_default=list, validate=validate.Length(max=10),
                             metadata={"description": "Other codes used in the same basket."})
    store_code = fields.String(validate=validate.Length(1, 32))
    customer = fields.Nested(CustomerRefSchema)
    basket = fields.Nested(BasketSchema, required=True)


class OfferBriefSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    kind = fields.String()


class CouponVerdictSchema(Schema):
    code = fields.String()
    valid = fields.Boolean()
    reason = fields.String(allow_none=True, metadata={"description": ", ".join(
        ("not_found", "inactive", "not_yet_valid", "expired", "customer_required",
         "wrong_customer", "used", "limit_reached", "customer_limit_reached",
         "budget_exhausted", "wrong_currency", "min_spend", "no_eligible_items",
         "not_combinable", "duplicate"))})
    message = fields.String(allow_none=True)
    discount = fields.String()
    offer = fields.Nested(OfferBriefSchema, allow_none=True)


class MemberCouponSchema(Schema):
    code = fields.String()
    offer = fields.Nested(OfferSchema)


class RewardSchema(Schema):
    id = fields.Integer(dump_only=True)
    name = Text(required=True, validate=validate.Length(1, 100))
    points_cost = fields.Integer(strict=True, required=True,
                                 validate=validate.Range(1, MAX_POINTS))
    offer_id = fields.Integer(strict=True, required=True, validate=validate.Range(1, 2**31 - 1))
    stock = fields.Integer(strict=True, allow_none=True, validate=validate.Range(0, 10**9))
    per_customer_limit = fields.Integer(strict=True, allow_none=True,
                                        validate=validate.Range(1, 10**6))
    active = fields.Boolean(load_default=True)


class RewardClaimInSchema(Schema):
    customer_id = fields.Integer(strict=True, required=True,
                                 validate=validate.Range(1, 2**63 - 1))


class RewardClaimSchema(Schema):
    id = fields.Integer()
    reward_id = fields.Integer()
    customer_id = fields.Integer()
    points = fields.Integer()
    coupon_code = fields.String()
    offer_id = fields.Integer()
    balance = fields.Integer()


class WithinDaysSchema(PageArgs):
    within_days = fields.Integer(load_default=30, validate=validate.Range(0, 3650))


class ExpiringPointsSchema(Schema):
    customer_id = fields.Integer()
    points = fields.Integer()
    first_expiry = fields.AwareDateTime()


class ExpiringCouponSchema(Schema):
    customer_id = fields.Integer()
    code = fields.String()
    offer_id = fields.Integer()
    offer_name = fields.String()
    valid_to = fields.Date()


OfferPageSchema = page_of(OfferSchema, "OfferPage")
CouponPageSchema = page_of(CouponSchema, "CouponPage")
MemberCouponPageSchema = page_of(MemberCouponSchema, "MemberCouponPage")
RewardPageSchema = page_of(RewardSchema, "RewardPage")
ExpiringPointsPageSchema = page_of(ExpiringPointsSchema, "ExpiringPointsPage")
ExpiringCouponPageSchema = page_of(ExpiringCouponSchema, "ExpiringCouponPage")
