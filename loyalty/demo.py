"""Loyalty demo data: a program in USD, three tiers, purchases for the first demo
members (so that they have points and tiers), and an offer with a few coupons.
Running it again adds nothing twice: purchases replay by receipt, the rest is found
by name."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from crm.db import db, utcnow
from crm.models import ApiKey, Customer
from loyalty import coupons, purchases, settings
from loyalty.models import Offer, Purchase, Tier

TIERS = [{"name": "Member"},
         {"name": "Silver", "threshold_points": 300, "multiplier": 1.25,
          "benefits": ["free delivery"]},
         {"name": "Gold", "threshold_points": 1000, "multiplier": 1.5,
          "benefits": ["free delivery", "birthday gift"]}]


def load(keys: dict[str, ApiKey]) -> None:
    settings.update_program({"currency": "USD"})
    have = set(db.session.scalars(select(Tier.name)))
    for tier in TIERS:
        if tier["name"] not in have:
            settings.create_tier({k: (str(v) if k == "multiplier" else v)
                                  for k, v in tier.items()})
    members = db.session.scalars(select(Customer.id).order_by(Customer.id).limit(40)).all()
    till = keys["demo-pos-NYC01"]
    now = utcnow()
    done = set(db.session.scalars(select(Purchase.receipt_id).where(
        Purchase.receipt_id.like("DEMO-%"))))
    for n, customer_id in enumerate(members):
        for visit in range(1 + n % 4):
            if f"DEMO-{customer_id}-{visit}" in done:
                continue
            amount = f"{40 + (n * 37 + visit * 53) % 260}.00"
            purchases.record_purchase({
                "receipt_id": f"DEMO-{customer_id}-{visit}",
                "occurred_at": now - timedelta(days=3 + visit * 20 + n),
                "currency": "USD", "total": amount, "customer": {"id": customer_id},
                "lines": [{"sku": f"SKU-{(n + visit) % 12:03d}",
                           "category": ("shoes", "bags", "coffee")[visit % 3],
                           "quantity": 1, "unit_price": amount}]}, till)
    if db.session.scalar(select(Offer.id).where(Offer.name == "Demo 10% off")) is None:
        offer = coupons.create_offer({"name": "Demo 10% off", "kind": "percent",
                                      "value": 10, "currency": "USD"})
        coupons.issue_codes(offer, 5, prefix="DEMO-")
