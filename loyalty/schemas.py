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
    SignedAmount,
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
    returns_anywhere = fields.Boolean(metadata={
        "description": "Returns taken at any store's till and by the shop (default); "
                       "false: only at the store of the sale."})
    tier_grace_days = fields.Integer(strict=True, validate=validate.Range(0, 365))
    verification_threshold = fields.Integer(
        strict=True, allow_none=True, validate=validate.Range(0, MAX_POINTS),
        metadata={"description": "Points a till may spend without the member's one-time "
                  "code (POST /customers/{id}/verification); null: no code needed."})
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
    total = Amount(required=True, metadata={
        "description": "The lines (quantity x unit_price) plus tax plus adjustments, within "
                       "one minor unit per line, before the coupons this service applies."})
    tax = Amount(metadata={"description": "Tax included in the total; earns no points."})
    adjustments = SignedAmount(metadata={
        "description": "The till's own changes to the lines' sum: negative for its "
                       "markdowns, positive for charges (delivery, fees), which earn nothing."})
    lines = fields.List(fields.Nested(LineSchema), required=True,
                        validate=validate.Length(1, 1000))
    redeem_points = fields.Integer(strict=True, load_default=0,
                                   validate=validate.Range(0, MAX_POINTS))
    verification_code = fields.String(validate=validate.Length(1, 12), metadata={
        "description": "The member's one-time code, when a till redeems more than the "
                       "program's verification_threshold."})
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
    tax = fields.String()
    adjustments = fields.String()
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
    return_id = fields.String(required=True, validate=RECEIPT, metadata={
        "description": "Unique per store taking the item back (its till's numbering)."})
    lines = fields.List(fields.Nested(ReturnLineSchema), validate=validate.Length(1, 1000))
    amount = Amount()
    currency = fields.String(validate=_currency, metadata={
        "description": "The refund's currency, if the till says it: must be the sale's."})
    taken_at_store = fields.String(validate=validate.Length(1, 32), metadata={
        "description": "The store taking the item back, for keys not bound to one (the "
                       "shop: an online store; default the sale's store when online, else "
                       "the online store in the sale's currency). A till's key implies it."})

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
    status = fields.String(metadata={
        "description": "applied; held until the purchase arrives; expired: held longer "
                       "than HELD_RETURN_DAYS (still applied if the purchase comes)"})
    sale_store = fields.String(metadata={"description": "The store of the sale."})
    taken_at_store = fields.String(metadata={
        "description": "The store that took the item back."})
    taken_by_key = fields.Integer(allow_none=True, metadata={
        "description": "The id of the API key that took it back."})
    created_at = fields.AwareDateTime()
    applied_at = fields.AwareDateTime(allow_none=True)
    expired_at = fields.AwareDateTime(allow_none=True)
    currency = fields.String()
    amount = fields.String()
    points_reversed = fields.Integer()
    points_restored = fields.Integer()
    points_uncollected = fields.Integer()
    balance = fields.Integer(allow_none=True)
    note = fields.String(allow_none=True)


ReturnPageSchema = page_of(ReturnSchema, "ReturnPage")


class ReturnQuerySchema(PageArgs):
    status = fields.String(validate=validate.OneOf(("held", "expired", "applied")),
                           metadata={"description": "held: waiting for its sale; expired: "
                                     "held longer than HELD_RETURN_DAYS."})


class ReceiptLineSchema(Schema):
    sku = fields.String()
    category = fields.String(allow_none=True)
    quantity = fields.Integer()
    unit_price = fields.String()
    amount = fields.String()
    earns = fields.Boolean()
    returned_quantity = fields.Integer()


class ReceiptReturnSchema(Schema):
    id = fields.Integer()
    return_id = fields.String()
    status = fields.String()
    taken_at_store = fields.String(metadata={"description": "Where it was taken back."})
    taken_by_key = fields.Integer(allow_none=True)
    amount = fields.String()
    points_reversed = fields.Integer()
    points_restored = fields.Integer()
    points_uncollected = fields.Integer()
    created_at = fields.AwareDateTime()
    applied_at = fields.AwareDateTime(allow_none=True)


class ReceiptSchema(Schema):
    """A sale as a receipt: its lines, returns, points and coupons."""

    id = fields.Integer()
    store_code = fields.String()
    receipt_id = fields.String()
    customer_id = fields.Integer(allow_none=True)
    occurred_at = fields.AwareDateTime()
    currency = fields.String()
    total = fields.String()
    tax = fields.String()
    adjustments = fields.String()
    discount = fields.String()
    paid = fields.String()
    returned = fields.String(metadata={"description": "Refunded so far."})
    points_earned = fields.Integer()
    points_pending = fields.Integer()
    points_redeemed = fields.Integer()
    points_reversed = fields.Integer()
    points_restored = fields.Integer()
    coupons_applied = fields.List(fields.Raw())
    lines = fields.List(fields.Nested(ReceiptLineSchema))
    returns = fields.List(fields.Nested(ReceiptReturnSchema))


ReceiptPageSchema = page_of(ReceiptSchema, "ReceiptPage")


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
    lines = fields.List(fields.Nested(LineSchema), load_default=list,
                        validate=validate.Length(0, 1000), metadata={
                            "description": "May be empty (a cart or till that has not "
                            "built its lines yet): offers on skus or categories then answer "
                            "no_eligible_items."})


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
    verification_code = fields.String(validate=validate.Length(1, 12))


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


SKU = validate.Regexp(r"^[\x21-\x7e]{1,64}\Z", error="1 to 64 printable characters, no spaces.")


class ProductSchema(Schema):
    """A catalogue product; ``price`` in ``currency``."""

    sku = fields.String(required=True, validate=SKU)
    name = Text(required=True, validate=validate.Length(1, 200))
    category = Text(required=True, validate=validate.Length(1, 64))
    price = Amount(required=True)
    currency = fields.String(required=True, validate=_currency)
    active = fields.Boolean(load_default=True)
    image_url = fields.Url(allow_none=True, schemes={"https", "http"},
                           validate=validate.Length(max=500))
    created_at = fields.AwareDateTime(dump_only=True)
    updated_at = fields.AwareDateTime(dump_only=True)

    @post_dump
    def _price(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        if isinstance(data.get("price"), str):
            data["price"] = to_amount(int(data["price"]), data["currency"])
        return data


ProductPageSchema = page_of(ProductSchema, "ProductPage")


def _product_batch(items: Any) -> None:
    if not isinstance(items, list) or not 1 <= len(items) <= 1000:
        raise ValidationError("A list of 1 to 1000 products.")


class ProductSyncInSchema(Schema):
    # Raw: each product is checked on its own (ProductSchema), so that one bad item is
    # its own result and never fails the batch.
    products = fields.Raw(required=True, validate=_product_batch, metadata={
        "type": "array", "items": {"type": "object"},
        "description": "Up to 1000 products (Product)."})


class ProductSyncOutSchema(Schema):
    results = fields.Raw(metadata={
        "type": "array", "items": {"type": "object"},
        "description": "One per product, in order: {sku, result (created, updated, "
        "unchanged, invalid), detail?}."})


class ProductArgs(PageArgs):
    category = fields.String(validate=validate.Length(1, 64))
    q = fields.String(validate=validate.Length(1, 100))


class RecommendationArgs(Schema):
    limit = fields.Integer(load_default=10, validate=validate.Range(1, 50))
    store_code = fields.String(validate=validate.Length(1, 32))


class RecommendationSchema(Schema):
    sku = fields.String()
    name = fields.String()
    category = fields.String()
    price = fields.String(metadata={"description": "A decimal string in ``currency``."})
    currency = fields.String()
    image_url = fields.String(allow_none=True)
    score = fields.Float()
    reason = fields.String(metadata={"description": "What a cashier can say: \"often "
                                     "bought with Ethiopian beans\"."})


class RecommendationListSchema(Schema):
    items = fields.List(fields.Nested(RecommendationSchema))
