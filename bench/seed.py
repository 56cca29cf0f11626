"""Fill a freshly migrated database for bench/pos.py: one store (B1, EUR), the program in
EUR, a pos key for B1, and MEMBERS customers (ids 1..MEMBERS) holding POINTS points each,
given through the ledger (as an administrator's adjustment) so that `flask loyalty
verify` holds. Configured by the app's environment (DATABASE_URL, INSTANCE_PATH).

    python -m bench.seed MEMBERS POINTS     # prints {"pos_key": ..., "members": ...}
"""

from __future__ import annotations

import json
import random
import sys

from sqlalchemy import insert, select

from crm import create_app, keys, stores
from crm.db import db, utcnow
from crm.models import Customer, CustomerIdentifier, identifier_row
from crm.sql import Sql, allocate_ids
from loyalty import accounts, ledger, settings

BATCH = 500


def sale(rng: random.Random, receipt_id: str, members: int, occurred_at: str, *,
         redeem: bool = False) -> dict[str, object]:
    """A body for `POST /api/v1/purchases` like bench/purchases.lua's, for the test
    client: one line at a random price, a random member of 1..MEMBERS, and 50 points
    redeemed when ``redeem``."""
    cents = rng.randint(100, 9999)
    price = f"{cents // 100}.{cents % 100:02d}"
    body: dict[str, object] = {
        "receipt_id": receipt_id, "occurred_at": occurred_at, "currency": "EUR",
        "total": price, "customer": {"id": rng.randint(1, members)},
        "lines": [{"sku": f"SKU{cents % 50}", "quantity": 1, "unit_price": price}]}
    if redeem:
        body["redeem_points"] = 50
    return body


def seed(members: int, points: int) -> dict[str, object]:
    app = create_app()
    with app.app_context():
        stores.create_store({"code": "B1", "name": "Bench", "timezone": "Europe/Paris",
                             "channel": "store", "currency": "EUR"})
        program = settings.update_program({"currency": "EUR"})
        _, pos_key = keys.create_key("bench till", ["pos"], "B1")
        now = utcnow()
        db.session.execute(insert(Customer), [
            {"first_name": f"Member{i}", "created_at": now, "updated_at": now}
            for i in range(1, members + 1)])
        ids = list(db.session.scalars(select(Customer.id).order_by(Customer.id)))
        identifier_ids = allocate_ids(CustomerIdentifier.__table__, len(ids))
        db.session.execute(insert(CustomerIdentifier), [
            {**identifier_row(iid, cid, "email", f"member{cid}@bench.example"),
             "created_at": now} for iid, cid in zip(identifier_ids, ids, strict=True)])
        for start in range(0, len(ids), BATCH):
            with Sql() as sql:
                locked = accounts.load_many(sql, ids[start:start + BATCH])
                for account in locked.values():
                    ledger.adjust(account, program, points, reason="bench", actor="bench")
                accounts.save(sql, *locked.values())
        db.session.commit()
        first, last = ids[0], ids[-1]
        db.session.remove()
        db.engine.dispose()
    return {"pos_key": pos_key, "members": len(ids), "first_id": first, "last_id": last}


if __name__ == "__main__":
    print(json.dumps(seed(int(sys.argv[1]), int(sys.argv[2]))))
