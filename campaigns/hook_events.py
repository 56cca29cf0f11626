"""The signals that become webhook events: one receiver per signal, each writing the
event (``hooks.emit``) in the transaction of the change, with ids and figures only.
Each first asks whether any endpoint wants the type, from the per-process cache, so
that a sale with no subscriber pays no statement."""

from __future__ import annotations

from typing import Any

from campaigns import hooks
from crm import signals
from crm.money import to_amount


def _purchase(purchase: Any) -> dict[str, Any]:
    money = {name: to_amount(getattr(purchase, name), purchase.currency)
             for name in ("total", "discount", "paid", "returned_paid")}
    return {"purchase_id": purchase.id, "store_id": purchase.store_id,
            "receipt_id": purchase.receipt_id, "occurred_at": purchase.occurred_at.isoformat(),
            "currency": purchase.currency, **money,
            "points_earned": purchase.points_earned, "points_pending": purchase.points_pending,
            "points_redeemed": purchase.points_redeemed,
            "points_reversed": purchase.points_reversed}


def on_purchase_recorded(_sender: Any, purchase: Any, **_: Any) -> None:
    if hooks.wanted("purchase.recorded"):
        hooks.emit("purchase.recorded", _purchase(purchase), customer_id=purchase.customer_id)


def on_purchase_returned(_sender: Any, purchase: Any, purchase_return: Any, full: bool,
                         **_: Any) -> None:
    if hooks.wanted("purchase.returned"):
        data = _purchase(purchase) | {
            "return_id": purchase_return.return_id, "full": full,
            "taken_store_id": purchase_return.taken_store_id,  # where it was taken back
            "returned": to_amount(purchase_return.returned_paid, purchase.currency)}
        hooks.emit("purchase.returned", data, customer_id=purchase.customer_id)


def on_points_changed(_sender: Any, *, customer_id: int, kind: str, cause: str, points: int,
                      pending: int, balance_after: int, purchase_id: int | None,
                      **_: Any) -> None:
    if hooks.wanted("customer.points.changed"):
        hooks.emit("customer.points.changed",
                   {"kind": kind, "cause": cause, "delta": points, "pending_delta": pending,
                    "balance_after": balance_after, "purchase_id": purchase_id},
                   customer_id=customer_id)


def on_tier_changed(_sender: Any, customer_id: int, old_tier_id: int | None,
                    new_tier_id: int | None, **_: Any) -> None:
    if hooks.wanted("customer.tier.changed"):
        hooks.emit("customer.tier.changed",
                   {"old_tier_id": old_tier_id, "new_tier_id": new_tier_id},
                   customer_id=customer_id)


def on_customer_created(_sender: Any, customer: Any, **_: Any) -> None:
    if hooks.wanted("customer.created"):
        hooks.emit("customer.created", {}, customer_id=customer.id)


def on_customer_merged(_sender: Any, survivor_id: int, source_id: int, **_: Any) -> None:
    if hooks.wanted("customer.merged"):
        hooks.emit("customer.merged", {"source_id": source_id}, customer_id=survivor_id)


def on_customer_unmerged(_sender: Any, survivor_id: int, source_id: int, **_: Any) -> None:
    if hooks.wanted("customer.unmerged"):
        hooks.emit("customer.unmerged", {"source_id": source_id}, customer_id=survivor_id)


def on_customer_erased(_sender: Any, customer_ids: list[int], **_: Any) -> None:
    if hooks.wanted("customer.erased"):
        for customer_id in customer_ids:
            hooks.emit("customer.erased", {}, customer_id=customer_id)


def on_consent_changed(_sender: Any, customer_id: int, choices: dict[str, bool],
                       source: str, **_: Any) -> None:
    if hooks.wanted("customer.consent.changed"):
        hooks.emit("customer.consent.changed",
                   {"consent": dict(choices), "source": source.split(":", 1)[0]},
                   customer_id=customer_id)


def on_coupon_redeemed(_sender: Any, *, coupon_id: int, offer_id: int, purchase_id: int,
                       customer_id: int | None, discount_minor: int, **_: Any) -> None:
    if hooks.wanted("coupon.redeemed"):
        hooks.emit("coupon.redeemed", {"coupon_id": coupon_id, "offer_id": offer_id,
                                       "purchase_id": purchase_id,
                                       "discount_minor": discount_minor},
                   customer_id=customer_id)


def survey_answered(response: Any) -> None:
    """Called by ``campaigns.surveys.answer`` (same package: no signal needed)."""
    if hooks.wanted("survey.answered"):
        hooks.emit("survey.answered", {"survey_id": response.survey_id,
                                       "response_id": response.id, "score": response.score,
                                       "channel": response.channel,
                                       "store_id": response.store_id},
                   customer_id=response.customer_id)


def on_referral(_sender: Any, *, event: str, referral_id: int, referrer_id: int,
                friend_id: int, status: str, reason: str | None = None,
                referrer_points: int = 0, friend_points: int = 0, **_: Any) -> None:
    """``referral_changed``: event is qualified, rewarded or reversed; the event is
    about the referrer (the customer whose sequence it takes)."""
    name = f"referral.{event}"
    if hooks.wanted(name):
        hooks.emit(name, {"referral_id": referral_id, "friend_id": friend_id,
                          "status": status, "reason": reason,
                          "referrer_points": referrer_points,
                          "friend_points": friend_points}, customer_id=referrer_id)


def on_security_alert(_sender: Any, alert: Any, **_: Any) -> None:
    if hooks.wanted("security.alert"):
        hooks.emit("security.alert", {"alert_id": alert.id, "rule": alert.rule,
                                      "subject": alert.subject, "status": alert.status})


def connect() -> None:
    """Connect the receivers (``campaigns.init_app``); blinker keeps one connection per
    receiver, so calling it again changes nothing."""
    for signal, receiver in (
            (signals.purchase_recorded, on_purchase_recorded),
            (signals.purchase_returned, on_purchase_returned),
            (signals.points_changed, on_points_changed),
            (signals.tier_changed, on_tier_changed),
            (signals.customer_created, on_customer_created),
            (signals.customer_merged, on_customer_merged),
            (signals.customer_unmerged, on_customer_unmerged),
            (signals.customer_erased, on_customer_erased),
            (signals.consent_changed, on_consent_changed),
            (signals.coupon_redeemed, on_coupon_redeemed),
            (signals.referral_changed, on_referral),
            (signals.security_alert_raised, on_security_alert)):
        signal.connect(receiver)
