"""Events one package sends and others react to (imports point crm <- loyalty <-
campaigns, so crm only ever sends). Receivers run inside the sender's transaction."""

from blinker import Namespace

_signals = Namespace()

customer_created = _signals.signal("customer-created")
customer_merged = _signals.signal("customer-merged")
customer_unmerged = _signals.signal("customer-unmerged")
customer_erased = _signals.signal("customer-erased")
purchase_recorded = _signals.signal("purchase-recorded")
purchase_returned = _signals.signal("purchase-returned")
security_alert_raised = _signals.signal("security-alert-raised")
tier_changed = _signals.signal("tier-changed")
# One per ledger row: customer_id, kind, cause, points, pending, balance_after, purchase_id.
points_changed = _signals.signal("points-changed")
# customer_id, choices ({"sms": True, ...}), source.
consent_changed = _signals.signal("consent-changed")
# coupon_id, offer_id, purchase_id, customer_id, discount_minor.
coupon_redeemed = _signals.signal("coupon-redeemed")
# customer_created also carries referral_code and referral_optional (loyalty attributes).
# Shop sync: codes=set -> receivers return {code: problem or None}, before writing;
referral_codes_check = _signals.signal("referral-codes-check")
# then given=[(customer_id, code, is_new)] for the members written.
referral_codes_given = _signals.signal("referral-codes-given")
# event (qualified, rewarded, reversed), referral_id, referrer_id, friend_id, status, ...
referral_changed = _signals.signal("referral-changed")
