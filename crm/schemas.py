"""The API's shapes for stores, keys and customers. Schemas reject unknown fields;
identifiers are checked and normalised by the service, which reports errors by field."""

from __future__ import annotations

import functools
import re
import zoneinfo
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from babel.numbers import is_currency
from marshmallow import (
    INCLUDE,
    Schema,
    ValidationError,
    fields,
    post_dump,
    validate,
    validates_schema,
)

from crm.models import CHANNELS, SCOPES


class Text(fields.String):
    """A string with surrounding white space removed."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        return super()._deserialize(value, attr, data, **kwargs).strip()


class DecimalString(fields.String):
    """An exact decimal given as a string ("1.5") or an integer, never a float; loaded
    as a Decimal within [minimum, maximum]."""

    PATTERN = r"^\d{1,9}(\.\d{1,6})?\Z"

    def __init__(self, minimum: str = "0", maximum: str = "1000000000", *,
                 exclusive_minimum: bool = False, **kwargs: Any) -> None:
        self.minimum, self.maximum = Decimal(minimum), Decimal(maximum)
        self.exclusive_minimum = exclusive_minimum
        kwargs.setdefault("metadata", {}).update(pattern=self.PATTERN)
        super().__init__(**kwargs)

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return None if value is None else format(Decimal(value).normalize(), "f")

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not re.fullmatch(self.PATTERN, value):
            raise ValidationError('A decimal number as a string, such as "1.5".')
        number = Decimal(value)
        low_ok = number > self.minimum if self.exclusive_minimum else number >= self.minimum
        if not low_ok or number > self.maximum:
            raise ValidationError(f"Between {self.minimum} and {self.maximum}.")
        return number


class Amount(fields.String):
    """Money at the API edge: a decimal string such as "12.30" (its currency says how
    many decimals it may have)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("validate", validate.Regexp(
            r"^\d{1,13}(\.\d{1,4})?\Z", error='An amount is a decimal string such as "12.30".'))
        super().__init__(**kwargs)


class SignedAmount(fields.String):
    """Money that may be negative ("-2.50"): adjustments such as a till's markdowns."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("validate", validate.Regexp(
            r"^-?\d{1,13}(\.\d{1,4})?\Z",
            error='An amount is a decimal string such as "12.30" or "-2.50".'))
        super().__init__(**kwargs)


@functools.cache
def _timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


EARLIEST, LATEST = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)


class Moment(fields.AwareDateTime):
    """A point in time with its offset, between 2000 and 2100 (a clock set to year 1 or
    9999 is a mistake, and would overflow date arithmetic)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        # datetime.fromisoformat reads ISO 8601 (with "Z") ten times faster than
        # marshmallow's parser; the rules are the same: a time with its offset.
        try:
            moment = datetime.fromisoformat(value) if isinstance(value, str) else None
        except ValueError:
            moment = None
        if moment is None or (isinstance(moment, date) and not isinstance(moment, datetime)):
            raise ValidationError("Not a valid date and time (ISO 8601, with an offset).")
        if moment.tzinfo is None:
            raise ValidationError("Give the offset too, such as +01:00 or Z.")
        if not EARLIEST <= moment < LATEST:
            raise ValidationError("A time between 2000 and 2100.")
        return moment


def not_in_the_future(moment: datetime) -> None:
    """For times reported by tills: a day of clock drift is tolerated."""
    if moment > datetime.now(UTC) + timedelta(days=1):
        raise ValidationError("In the future.")


def _timezone(name: str) -> None:
    if name not in _timezones():
        raise ValidationError(
            "Not an IANA time zone name (such as 'Europe/Paris' or 'America/New_York')."
        )


def _currency(code: str) -> None:
    if not re.fullmatch(r"[A-Z]{3}", code) or not is_currency(code):
        raise ValidationError("Not an ISO 4217 currency code (such as 'USD' or 'EUR').")


def _past_birthday(day: date) -> None:
    if not date(1900, 1, 1) <= day <= date.today():
        raise ValidationError("A birthday lies between 1900-01-01 and today.")


class ProblemSchema(Schema):
    """An error answer (RFC 9457), with its problem type's own members beside these
    (``existing_customer_id``, ``balance``, ...): documented as allowed."""

    class Meta:
        unknown = INCLUDE

    type = fields.String()
    title = fields.String()
    status = fields.Integer()
    detail = fields.String()
    errors = fields.Dict()
    request_id = fields.String()


class PageArgs(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(1, 1_000_000))
    page_size = fields.Integer(load_default=20, validate=validate.Range(1, 100))


def page_of(item: type[Schema], name: str) -> type[Schema]:
    """The ``{items: [...]}`` answer of a paginated list."""
    return Schema.from_dict({"items": fields.List(fields.Nested(item))}, name=name)


def _clock(value: str) -> None:
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
        raise ValidationError("A local time written HH:MM, from 00:00 to 23:59.")


class QuietHoursSchema(Schema):
    start = fields.String(required=True, validate=_clock, metadata={"example": "21:00"})
    end = fields.String(required=True, validate=_clock, metadata={"example": "08:00"})

    @validates_schema(skip_on_field_errors=True)
    def _both(self, data: dict[str, Any], **_: Any) -> None:
        # required even inside a PATCH (partial loading reaches nested schemas)
        for name in ("start", "end"):
            if name not in data:
                raise ValidationError("Missing data for required field.", name)


class StoreSchema(Schema):
    code = fields.String(
        required=True,
        validate=validate.Regexp(
            r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}\Z",
            error="1 to 32 letters, digits, '-' or '_', starting with a letter or digit.",
        ),
    )
    name = Text(required=True, validate=validate.Length(1, 200))
    timezone = fields.String(required=True, validate=_timezone)
    channel = fields.String(required=True, validate=validate.OneOf(CHANNELS))
    currency = fields.String(required=True, validate=_currency)
    quiet_hours = fields.Nested(
        QuietHoursSchema, allow_none=True,
        metadata={"description": "Local times between which only transactional SMS go "
                  "out; null: the service's QUIET_HOURS."})
    created_at = fields.AwareDateTime(dump_only=True)


class ApiKeyCreateSchema(Schema):
    name = Text(required=True, validate=validate.Length(1, 100))
    scopes = fields.List(
        fields.String(validate=validate.OneOf(SCOPES)),
        required=True,
        validate=validate.Length(min=1, max=len(SCOPES)),
    )
    store_code = fields.String(load_default=None, validate=validate.Length(1, 32))
    expires_at = Moment(load_default=None, allow_none=True,
                        metadata={"description": "The key stops working then."})
    allowed_ips = fields.List(fields.String(validate=validate.Length(1, 50)),
                              load_default=None, allow_none=True,
                              validate=validate.Length(1, 100),
                              metadata={"description": "CIDR ranges the key may be used "
                                        "from (default: anywhere)."})


class ApiKeyRotateSchema(Schema):
    overlap_hours = fields.Float(load_default=None, validate=validate.Range(0, 24 * 90),
                                 metadata={"description": "How long the old key keeps "
                                           "working (default KEY_ROTATION_OVERLAP_HOURS)."})
    expires_at = Moment(load_default=None, allow_none=True)


class ApiKeySchema(Schema):
    id = fields.Integer(dump_only=True)
    name = fields.String()
    prefix = fields.String(metadata={"description": "The public part of the key."})
    scopes = fields.List(fields.String(), attribute="scope_list")
    store_code = fields.String(allow_none=True)
    created_at = fields.AwareDateTime()
    revoked_at = fields.AwareDateTime(allow_none=True)
    expires_at = fields.AwareDateTime(allow_none=True)
    allowed_ips = fields.List(fields.String(), allow_none=True)
    last_used_at = fields.AwareDateTime(
        allow_none=True, metadata={"description": "Written at most once a minute."})
    last_used_address = fields.String(allow_none=True)
    rotated_from_id = fields.Integer(allow_none=True)


class ApiKeyCreatedSchema(ApiKeySchema):
    key = fields.String(metadata={"description": "The key itself: shown this once only."})


class ConsentSchema(Schema):
    sms = fields.Boolean()
    email = fields.Boolean()


class IdentifierSchema(Schema):
    kind = fields.String()
    value = fields.String()
    created_at = fields.AwareDateTime()


class CustomerInSchema(Schema):
    email = fields.String(allow_none=True, validate=validate.Length(max=320))
    phone = fields.String(allow_none=True, validate=validate.Length(max=40))
    card_number = fields.String(allow_none=True, validate=validate.Length(max=64))
    first_name = Text(allow_none=True, validate=validate.Length(1, 100))
    last_name = Text(allow_none=True, validate=validate.Length(1, 100))
    birthday = fields.Date(allow_none=True, validate=_past_birthday)
    city = Text(allow_none=True, validate=validate.Length(1, 100))
    consent = fields.Nested(ConsentSchema)


class CustomerCreateSchema(CustomerInSchema):
    """A new customer, who may name the member who referred them."""

    referral_code = fields.String(validate=validate.Length(1, 32), load_only=True, metadata={
        "description": "A member's referral code: attributes this new customer to them."})
    referral_optional = fields.Boolean(load_default=False, load_only=True, metadata={
        "description": "true: an unusable referral_code is ignored instead of a 422."})


class CustomerSchema(Schema):
    """A profile; feature packages add their part (``tier``, ``points_balance``)."""

    id = fields.Integer()
    first_name = fields.String(allow_none=True)
    last_name = fields.String(allow_none=True)
    birthday = fields.Date(allow_none=True)
    city = fields.String(allow_none=True)
    email = fields.String(allow_none=True)
    phone = fields.String(allow_none=True)
    card_number = fields.String(allow_none=True)
    identifiers = fields.List(fields.Nested(IdentifierSchema))
    consent = fields.Nested(ConsentSchema)
    tier = fields.String(allow_none=True, dump_default=None)
    points_balance = fields.Integer(dump_default=0)
    created_at = fields.AwareDateTime()
    updated_at = fields.AwareDateTime()

    @post_dump(pass_original=True)
    def _extras(self, data: dict[str, Any], original: Any, **kwargs: Any) -> dict[str, Any]:
        data.update(getattr(original, "profile_extras", {}))
        return data


def mask_email(value: str | None) -> str | None:
    """``ada.lovelace@example.com`` -> ``a***@e***.com``: enough for a cashier to ask
    "is this your address?", too little to read it."""
    if not value or "@" not in value:
        return None
    local, _, domain = value.partition("@")
    name, dot, tld = domain.rpartition(".")
    return f"{local[:1]}***@{(name or tld)[:1]}***{dot}{tld if name else ''}"


def mask_phone(value: str | None) -> str | None:
    """``+12125550001`` -> ``***0001``: the last four digits only."""
    return f"***{value[-4:]}" if value else None


class CustomerMaskedSchema(Schema):
    """What a till sees of a member: enough to greet and confirm them, nothing to copy."""

    id = fields.Integer()
    first_name = fields.String(allow_none=True)
    last_initial = fields.Function(
        lambda c: c.last_name[:1] if c.last_name else None, allow_none=True)
    phone_masked = fields.Function(lambda c: mask_phone(c.phone), allow_none=True)
    email_masked = fields.Function(lambda c: mask_email(c.email), allow_none=True)
    tier = fields.String(allow_none=True, dump_default=None)
    points_balance = fields.Integer(dump_default=0)

    @post_dump(pass_original=True)
    def _extras(self, data: dict[str, Any], original: Any, **kwargs: Any) -> dict[str, Any]:
        extras = getattr(original, "profile_extras", {})
        data.update({k: extras[k] for k in ("tier", "points_balance") if k in extras})
        return data


class CustomerRefSchema(Schema):
    """Which customer: by id or by exactly one identifier."""

    id = fields.Integer(validate=validate.Range(1, 2**63 - 1))
    email = fields.String(validate=validate.Length(1, 320))
    phone = fields.String(validate=validate.Length(1, 40))
    card_number = fields.String(validate=validate.Length(1, 64))

    @validates_schema
    def _one(self, data: dict[str, Any], **kwargs: Any) -> None:
        if len(data) != 1:
            raise ValidationError("Give exactly one of id, email, phone, card_number.")


class CustomerQuerySchema(PageArgs):
    q = fields.String(validate=validate.Length(1, 100))
    email = fields.String(validate=validate.Length(1, 320))
    phone = fields.String(validate=validate.Length(1, 40))
    card_number = fields.String(data_key="card", validate=validate.Length(1, 64))
    segment_id = fields.Integer(validate=validate.Range(1, 2**31 - 1),
                                metadata={"description": "Members of this segment."})


StorePageSchema = page_of(StoreSchema, "StorePage")
ApiKeyPageSchema = page_of(ApiKeySchema, "ApiKeyPage")
CustomerPageSchema = page_of(CustomerSchema, "CustomerPage")
CustomerMaskedPageSchema = page_of(CustomerMaskedSchema, "CustomerMaskedPage")


class SyncMemberSchema(CustomerCreateSchema):
    """One shop member in a sync batch; checked one by one, so one bad member never
    fails the batch."""

    external_id = fields.String(required=True, validate=validate.Length(1, 64))
    updated_at = Moment(required=True)


def _batch(items: Any) -> None:
    if not isinstance(items, list) or not 1 <= len(items) <= 1000:
        raise ValidationError("A list of 1 to 1000 members.")


class SyncInSchema(Schema):
    # Raw, not List(Raw): each member is checked by the service (SyncMemberSchema), so
    # that one bad member is its own result; a thousand no-op field calls cost time.
    customers = fields.Raw(required=True, validate=_batch, metadata={
        "type": "array", "items": {"type": "object"},
        "description": "Up to 1000 members (SyncMember)."})


class SyncOutSchema(Schema):
    # Items are built by the service in SyncResult's shape and passed through as they
    # are: dumping a thousand nested results again would cost more than the sync itself.
    results = fields.Raw(metadata={
        "type": "array", "items": {"type": "object"},
        "description": "One per member, in order: {external_id, customer_id, result "
        "(created, updated, matched, unchanged, conflict, invalid), detail}."})


class ConsentInSchema(Schema):
    sms = fields.Boolean()
    email = fields.Boolean()
    source = fields.String(validate=validate.Length(1, 40), metadata={
        "description": "Where the choice was made (form, till...); default: the caller."})

    @validates_schema
    def _some(self, data: dict[str, Any], **kwargs: Any) -> None:
        if "sms" not in data and "email" not in data:
            raise ValidationError("Give sms, email or both.")


class ConsentEventSchema(Schema):
    channel = fields.String()
    granted = fields.Boolean()
    source = fields.String()
    store_id = fields.Integer(allow_none=True)
    created_at = fields.AwareDateTime()


class ConsentStateSchema(Schema):
    sms = fields.Boolean()
    email = fields.Boolean()
    history = fields.List(fields.Nested(ConsentEventSchema))


class MergedCustomerSchema(Schema):
    id = fields.Integer()
    merged_into = fields.Integer(attribute="merged_into_id")


class UnmergeInSchema(Schema):
    source_customer_id = fields.Integer(strict=True, required=True,
                                        validate=validate.Range(1, 2**63 - 1))


class MergeInSchema(UnmergeInSchema):
    force = fields.Boolean(load_default=False, metadata={
        "description": "Merge two shop members with their own accounts all the same."})


class MergeSchema(Schema):
    id = fields.Integer()
    survivor_id = fields.Integer()
    source_id = fields.Integer()
    actor = fields.String(allow_none=True)
    created_at = fields.AwareDateTime()
    undone_at = fields.AwareDateTime(allow_none=True)
    moved = fields.Dict()


class ErasedSchema(Schema):
    id = fields.Integer()
    erased_at = fields.AwareDateTime()


class TimelineItemSchema(Schema):
    at = fields.AwareDateTime()
    type = fields.String(metadata={"description": "purchase, points, coupon, consent, "
                                                  "merge, audit, message, survey..."})
    ref_id = fields.Integer()
    label = fields.String()
    amount = fields.String(allow_none=True)
    currency = fields.String(allow_none=True)
    points = fields.Integer(allow_none=True)


class DuplicateCustomerSchema(Schema):
    id = fields.Integer()
    first_name = fields.String(allow_none=True)
    last_name = fields.String(allow_none=True)
    birthday = fields.Date(allow_none=True)
    email = fields.String(allow_none=True)
    phone = fields.String(allow_none=True)


class DuplicateSchema(Schema):
    customer = fields.Nested(DuplicateCustomerSchema)
    score = fields.Integer()
    reasons = fields.List(fields.String())


TimelinePageSchema = page_of(TimelineItemSchema, "TimelinePage")
DuplicatePageSchema = page_of(DuplicateSchema, "DuplicatePage")


class AuditQuerySchema(PageArgs):
    actor = fields.String(validate=validate.Length(1, 120))
    object_type = fields.String(validate=validate.Length(1, 40))
    object_id = fields.String(validate=validate.Length(1, 64))
    action = fields.String(validate=validate.Length(1, 40))
    from_ = Moment(data_key="from", attribute="from")
    to = Moment()


class AuditEntrySchema(Schema):
    id = fields.Integer()
    created_at = fields.AwareDateTime()
    actor = fields.String()
    store_id = fields.Integer(allow_none=True)
    address = fields.String(allow_none=True)
    request_id = fields.String(allow_none=True)
    action = fields.String()
    object_type = fields.String()
    object_id = fields.String()
    fields_ = fields.List(fields.String(), data_key="fields", attribute="fields",
                          metadata={"description": "Names of the fields changed."})
    before = fields.Dict(metadata={"description": "Non-personal values before."})
    after = fields.Dict(metadata={"description": "Non-personal values after."})
    prev_hash = fields.String()
    hash = fields.String()


AuditPageSchema = page_of(AuditEntrySchema, "AuditPage")


class AlertQuerySchema(PageArgs):
    status = fields.String(validate=validate.OneOf(("open", "resolved")))


class AlertSchema(Schema):
    id = fields.Integer()
    rule = fields.String()
    status = fields.String()
    subject = fields.String()
    detail = fields.String()
    count = fields.Integer(metadata={"description": "Occurrences while it was open."})
    created_at = fields.AwareDateTime()
    last_seen_at = fields.AwareDateTime()
    resolved_at = fields.AwareDateTime(allow_none=True)
    resolved_by = fields.String(allow_none=True)
    resolution = fields.String(allow_none=True)


AlertPageSchema = page_of(AlertSchema, "AlertPage")


class ResolveInSchema(Schema):
    resolution = Text(validate=validate.Length(max=1000))
