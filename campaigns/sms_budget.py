"""How many SMS went out in the last hour, against two thresholds (README "Security"):
past SMS_BURST_LIMIT an ``sms_burst`` alert is raised; at SMS_HARD_CAP the sender stops
and the outbox holds the rest (``sms_hard_cap`` alert) until the hour has room again.
SMS cost money per message: a runaway campaign or an abused endpoint must not spend
without bound (OWASP API4). Counted in the rate limiter's storage (Redis across nodes)."""

from __future__ import annotations

from flask import current_app
from limits import RateLimitItemPerHour

from crm import alerts
from crm.limits import counters


def _cap() -> RateLimitItemPerHour:
    return RateLimitItemPerHour(current_app.config["SMS_HARD_CAP"])


def sent_this_hour() -> int:
    cap = _cap()
    return cap.amount - counters("get_window_stats", cap, "sms-sent").remaining


def room() -> int:
    """How many may still go out this hour; at 0 the cap holds the outbox (alerted)."""
    left = _cap().amount - sent_this_hour()
    if left <= 0:
        alerts.raise_alert("sms_hard_cap", "outbox",
                           f"{sent_this_hour()} SMS sent within the hour, the cap "
                           f"(SMS_HARD_CAP): the outbox holds further messages.")
    return left


def sent(count: int) -> None:
    """``count`` messages went to the provider; alert once past SMS_BURST_LIMIT."""
    if count <= 0:
        return
    counters("hit", _cap(), "sms-sent", cost=count)
    total, burst = sent_this_hour(), current_app.config["SMS_BURST_LIMIT"]
    if total > burst:
        alerts.raise_alert("sms_burst", "outbox",
                           f"{total} SMS sent within the hour, more than the usual "
                           f"{burst} (SMS_BURST_LIMIT).")
