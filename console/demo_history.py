"""A year of shopping for the demo's customers, so that a first look at the console
shows curves: purchases in the stores and the web shop with seasonality (a December
peak, a summer bump, busier weekends), returns, coupons used, tiers reached and survey
answers. Rows go in with bulk inserts and stay consistent with the ledger (`flask
loyalty verify`): each purchase earns a released lot and its ledger row, a return
reverses them, and each account holds the sum. Runs once: a second `flask demo` finds
its receipts and adds nothing."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from campaigns.models import Survey, SurveyInvitation, SurveyResponse
from crm import pii
from crm.db import db, utcnow
from crm.models import Customer, Store
from crm.sql import allocate_ids, bulk_insert
from loyalty import jobs
from loyalty.models import (
    Account,
    Coupon,
    CouponRedemption,
    LedgerEntry,
    Lot,
    LotDraw,
    Offer,
    Purchase,
    PurchaseLine,
    PurchaseReturn,
)

PREFIX = "HIST-"
CATALOGUE = [("SKU-101", "shoes", 8900), ("SKU-102", "shoes", 12900), ("SKU-201", "bags", 6400),
             ("SKU-202", "bags", 15900), ("SKU-301", "coffee", 1450), ("SKU-302", "coffee", 2250),
             ("SKU-401", "socks", 900), ("SKU-501", "jackets", 19900)]
# Share of a year's sales per month (January first): a December peak, a summer bump.
SEASON = [6, 5, 7, 7, 8, 9, 10, 9, 7, 8, 10, 14]
COMMENTS = ["Lovely staff", "Quick and easy", "Long queue at the till", "Great coffee",
            "Could not find my size", None, None, None]


def _when(rng: random.Random, now: Any) -> Any:
    """A moment in the last year, drawn with the season's and the weekend's weights."""
    while True:
        moment = now - timedelta(days=rng.uniform(1, 364), hours=rng.uniform(0, 10))
        weight = SEASON[moment.month - 1] / 14 * (1.4 if moment.weekday() >= 5 else 1) / 1.4
        if rng.random() < weight:
            return moment


def load(minimum_customers: int = 200) -> int:
    """Add the year to customers without an account yet; answer the purchases added."""
    if db.session.scalar(select(Purchase.id).where(Purchase.receipt_id.like(PREFIX + "%"))
                         .limit(1)) is not None:
        return 0
    people = db.session.scalars(
        select(Customer.id).where(Customer.merged_into_id.is_(None),
                                  Customer.erased_at.is_(None),
                                  Customer.id.not_in(select(Account.customer_id)))
        .order_by(Customer.id)).all()
    if len(people) < minimum_customers:
        return 0
    stores = {s.code: s for s in db.session.scalars(select(Store))}
    survey = db.session.scalar(select(Survey).where(Survey.kind == "nps").order_by(Survey.id))
    offer = db.session.scalar(select(Offer).where(Offer.name == "Demo 10% off"))
    rng, now = random.Random(20261201), utcnow()
    expiry = timedelta(days=365)

    sales: list[dict[str, Any]] = []
    for customer_id in people:
        home = rng.choice(["NYC01", "NYC01", "SFO01", "WEB"])
        for _ in range(rng.choice([1, 1, 2, 3, 4, 5, 6, 8, 10, 14])):
            store = home if rng.random() < 0.8 else rng.choice(list(stores))
            items = [rng.choice(CATALOGUE) for _ in range(rng.choice([1, 1, 2, 3]))]
            sales.append({"customer_id": customer_id, "store": stores[store],
                          "at": _when(rng, now), "items": items})
    sales.sort(key=lambda s: (s["customer_id"], s["at"]))

    ids = iter(allocate_ids(Purchase.__table__, len(sales)))
    purchases, lines, lots, ledger, returns, redemptions, coupons = [], [], [], [], [], [], []
    invitations, responses = [], []
    lot_ids = iter(allocate_ids(Lot.__table__, len(sales)))
    line_ids = iter(allocate_ids(PurchaseLine.__table__, sum(len(s["items"]) for s in sales)))
    return_ids = iter(allocate_ids(PurchaseReturn.__table__, len(sales) // 10 + 1))
    coupon_ids = iter(allocate_ids(Coupon.__table__, len(sales) // 10 + 1))
    invitation_ids = iter(allocate_ids(SurveyInvitation.__table__, len(sales)))
    balances: dict[int, int] = {}
    lifetime: dict[int, int] = {}
    open_lots: dict[int, list[dict[str, Any]]] = {}  # spendable, closest to expiry first
    draws: list[dict[str, Any]] = []
    for sale in sales:
        pid, cid, at, store = next(ids), sale["customer_id"], sale["at"], sale["store"]
        total = sum(price for _, _, price in sale["items"])
        discount, applied = 0, []
        if offer is not None and rng.random() < 0.06:  # a coupon from a mailing
            discount = total // 10
            coupon_id = next(coupon_ids)
            code = f"H{pid:09d}"
            coupons.append({"id": coupon_id, "offer_id": offer.id, "code": code,
                            "batch": None, "customer_id": cid, "max_uses": 1, "uses": 1,
                            "created_at": at - timedelta(days=3)})
            redemptions.append({"coupon_id": coupon_id, "offer_id": offer.id,
                                "purchase_id": pid, "customer_id": cid, "discount": discount,
                                "bonus_points": 0, "created_at": at, "reversed_at": None})
            applied = [{"code": code, "offer_id": offer.id, "discount":
                        f"{discount / 100:.2f}"}]
        redeemed = 0
        if balances.get(cid, 0) >= 500 and rng.random() < 0.25:  # points as a discount
            redeemed = min(500 * rng.choice([1, 1, 2]), balances[cid], total - discount)
            discount += redeemed  # a point is worth a cent
            balances[cid] -= redeemed
            ledger.append({"customer_id": cid, "kind": "redeem", "cause": "purchase",
                           "points": -redeemed, "pending": 0, "balance_after": balances[cid],
                           "purchase_id": pid, "return_id": None, "lot_id": None,
                           "reason": None, "actor": "demo", "occurred_at": at,
                           "created_at": at})
            entry, left = len(ledger) - 1, redeemed
            for lot in open_lots[cid]:
                take = min(left, lot["remaining"])
                if take:
                    lot["remaining"] -= take
                    left -= take
                    draws.append({"entry": entry, "lot_id": lot["id"], "points": take})
            open_lots[cid] = [lot for lot in open_lots[cid] if lot["remaining"]]
        paid = total - discount
        earned = paid // 100
        lot_id = next(lot_ids)
        balances[cid] = balances.get(cid, 0) + earned
        lifetime[cid] = lifetime.get(cid, 0) + earned
        returned = not redeemed and rng.random() < 0.05 and at < now - timedelta(days=3)
        purchases.append({
            "id": pid, "store_id": store.id, "receipt_id": f"{PREFIX}{pid}",
            "request_hash": "demo", "customer_id": cid, "occurred_at": at, "currency": "USD",
            "total": total, "discount": discount, "paid": paid, "points_earned": earned,
            "points_pending": 0, "points_redeemed": redeemed, "coupons_applied": applied,
            "balance_after": balances[cid], "tier_after": None,
            "returned_paid": paid if returned else 0,
            "points_reversed": earned if returned else 0, "points_restored": 0,
            "created_at": at})
        for sku, category, price in sale["items"]:
            lines.append({"id": next(line_ids), "purchase_id": pid, "sku": sku,
                          "category": category, "quantity": 1, "unit_price": price,
                          "amount": price, "earns": True,
                          "returned_quantity": 1 if returned else 0})
        lots.append({"id": lot_id, "customer_id": cid, "points": earned,
                     "remaining": 0 if returned else earned, "released": True,
                     "pending_until": None, "expires_at": at + expiry, "purchase_id": pid,
                     "created_at": at})
        if not returned and earned:
            open_lots.setdefault(cid, []).append(lots[-1])
        ledger.append({"customer_id": cid, "kind": "earn", "cause": "purchase",
                       "points": earned, "pending": 0, "balance_after": balances[cid],
                       "purchase_id": pid, "return_id": None, "lot_id": lot_id,
                       "reason": None, "actor": "demo", "occurred_at": at, "created_at": at})
        if returned:
            back = min(at + timedelta(days=rng.uniform(1, 3)), now)
            return_id = next(return_ids)
            balances[cid] -= earned
            # One in five taken back at another store of the same currency (anywhere).
            others = [s for s in stores.values()
                      if s.currency == store.currency and s.id != store.id]
            taken = others[pid % len(others)] if others and pid % 5 == 0 else store
            returns.append({
                "id": return_id, "store_id": store.id, "taken_store_id": taken.id,
                "taken_key_id": None, "receipt_id": f"{PREFIX}{pid}",
                "return_id": f"{PREFIX}R{pid}", "purchase_id": pid, "request_hash": "demo",
                "status": "applied", "requested": {"lines": None, "amount": None},
                "returned_paid": paid, "points_reversed": earned, "points_restored": 0,
                "points_uncollected": 0, "balance_after": balances[cid], "created_at": back,
                "applied_at": back, "note": None})
            ledger.append({"customer_id": cid, "kind": "reverse", "cause": "return",
                           "points": -earned, "pending": 0, "balance_after": balances[cid],
                           "purchase_id": pid, "return_id": return_id, "lot_id": lot_id,
                           "reason": None, "actor": "demo", "occurred_at": back,
                           "created_at": back})
        if survey is not None and at > now - timedelta(days=90) and rng.random() < 0.3:
            invitation_id = next(invitation_ids)
            score = rng.choices(range(11), [1, 1, 1, 1, 2, 3, 4, 8, 14, 16, 12])[0]
            invitations.append({"id": invitation_id, "survey_id": survey.id,
                                "customer_id": cid, "purchase_id": pid,
                                "store_id": store.id, "status": "answered", "due_at": at,
                                "invited_at": at, "expires_at": at + timedelta(days=7),
                                "message_id": None, "created_at": at})
            responses.append({"invitation_id": invitation_id, "survey_id": survey.id,
                              "customer_id": cid, "store_id": store.id, "score": score,
                              "comment": rng.choice(COMMENTS), "channel": "sms",
                              "created_at": at + timedelta(hours=1)})

    for response_id, row in zip(allocate_ids(SurveyResponse.__table__, len(responses)),
                                responses, strict=True):
        row["id"] = response_id
        row["comment_sealed"] = pii.seal("survey_responses", "comment_sealed", response_id,
                                         row.pop("comment"))
    entry_ids = allocate_ids(LedgerEntry.__table__, len(ledger))
    for entry_id, row in zip(entry_ids, ledger, strict=True):
        row["id"] = entry_id
    draws = [{"entry_id": entry_ids[d["entry"]], "lot_id": d["lot_id"], "points": d["points"]}
             for d in draws]
    accounts = [{"customer_id": cid, "balance": balance, "pending": 0,
                 "lifetime": lifetime[cid], "tier_id": None, "tier_since": None,
                 "downgrade_at": None, "updated_at": now} for cid, balance in balances.items()]
    for table, rows in ((Purchase, purchases), (PurchaseLine, lines), (Lot, lots),
                        (PurchaseReturn, returns), (LedgerEntry, ledger), (LotDraw, draws),
                        (Account, accounts),
                        (Coupon, coupons), (CouponRedemption, redemptions),
                        (SurveyInvitation, invitations), (SurveyResponse, responses)):
        bulk_insert(table.__table__, rows)
    if offer is not None:
        offer.uses += len(redemptions)
        offer.spent += sum(r["discount"] for r in redemptions)
    # Members joined some weeks before their first purchase.
    first: dict[int, Any] = {}
    for sale in sales:
        first.setdefault(sale["customer_id"], sale["at"])
    db.session.execute(update(Customer), [
        {"id": cid, "created_at": at - timedelta(days=rng.uniform(0, 60))}
        for cid, at in first.items()])
    jobs.review_tiers(now)
    db.session.flush()
    return len(purchases)
