"""Demo data a newcomer can try the API with: stores, customers, and keys."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import date

from sqlalchemy import select

from crm import keys
from crm.customers import owners
from crm.db import db, utcnow
from crm.models import ApiKey, ConsentEvent, Customer, CustomerIdentifier, Store

STORES = [
    {"code": "NYC01", "name": "New York, 5th Avenue", "timezone": "America/New_York",
     "channel": "store", "currency": "USD"},
    {"code": "SFO01", "name": "San Francisco, Market St", "timezone": "America/Los_Angeles",
     "channel": "store", "currency": "USD"},
    {"code": "WEB", "name": "Online shop", "timezone": "America/New_York",
     "channel": "online", "currency": "USD"},
]
FIRST = ["Ada", "Ben", "Chloe", "Dan", "Eva", "Finn", "Grace", "Hugo", "Iris", "Jack",
         "Kim", "Leo", "Maya", "Noah", "Olga", "Paul", "Quinn", "Rosa", "Sam", "Tara"]
LAST = ["Smith", "Jones", "Garcia", "Miller", "Davis", "Lopez", "Wilson", "Moore",
        "Taylor", "Lee", "Clark", "Young", "King", "Scott", "Green"]
CITIES = ["New York", "Brooklyn", "San Francisco", "Oakland", "Jersey City"]
DEMO_KEYS = [("demo-admin", ["admin"], None), ("demo-marketing", ["marketing"], None),
             ("demo-shop", ["shop"], None), ("demo-pos-NYC01", ["pos"], "NYC01"),
             ("demo-pos-SFO01", ["pos"], "SFO01")]


def _demo_customer(n: int, rng: random.Random) -> tuple[Customer, list[tuple[str, str]]]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    identifiers = [("email", f"{first}.{last}.{n}@example.com".lower()),
                   ("phone", f"+1212555{n:04d}")]
    if n % 3 == 0:
        identifiers.append(("card", f"DEMO{n:06d}"))
    customer = Customer(
        first_name=first, last_name=last, city=rng.choice(CITIES),
        birthday=date(rng.randint(1950, 2005), rng.randint(1, 12), rng.randint(1, 28)),
        consent_sms=rng.random() < 0.7, consent_email=rng.random() < 0.6,
        identifiers=[CustomerIdentifier(kind=k, value=v) for k, v in identifiers],
    )
    return customer, identifiers


# Feature packages add their demo data: each gets the demo API key rows by name.
DemoExtension = Callable[[dict[str, ApiKey]], None]
demo_extensions: list[DemoExtension] = []
# Lines extensions add for `flask demo` to print after the keys (console users...).
demo_notes: list[str] = []


def load_demo(count: int) -> list[tuple[str, str]]:
    demo_notes.clear()
    existing = set(db.session.scalars(select(Store.code)))
    db.session.add_all(Store(**s) for s in STORES if s["code"] not in existing)
    db.session.flush()

    rng = random.Random(20261125)
    made = [_demo_customer(n, rng) for n in range(1, count + 1)]
    taken = owners([pair for _, ids in made for pair in ids])
    fresh = [c for c, ids in made if not any(p in taken for p in ids)]
    db.session.add_all(fresh)
    db.session.flush()
    for c in fresh:
        db.session.add_all(ConsentEvent(customer_id=c.id, channel=channel, granted=granted,
                                        source="demo")
                           for channel, granted in c.consent.items())

    names = [name for name, _, _ in DEMO_KEYS]
    for old in db.session.scalars(select(ApiKey).where(ApiKey.name.in_(names),
                                                       ApiKey.revoked_at.is_(None))):
        old.revoked_at = utcnow()
    printed, rows = [], {}
    for name, scopes, store in DEMO_KEYS:
        rows[name], key = keys.create_key(name, scopes, store)
        printed.append((name, key))
    db.session.flush()
    for extension in demo_extensions:
        extension(rows)
    return printed
