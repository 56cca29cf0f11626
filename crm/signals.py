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
# Once per ledger row: customer_id, kind, cause, points, pending, balance_after, purchase_id.
points_changed = _signals.signal("points-changed")
