"""The console's dashboard at scale: 100,000 customers and 1,000,000 purchases (over
400 days, bench/segments.py's generator), each purchase with its earn row in the
ledger, one in ten with a redemption, accounts and tiers.

Times the dashboard's figures (every aggregate it shows: members, active members,
sales and points per day over 90 days, tiers, liability, coupons, NPS) and the whole
page as a signed-in browser gets it, against a baseline in the same run: a bare
``SELECT count(*) FROM purchases`` (one pass over the purchases' index). Each is timed
5 times, alternating; it prints the medians and their ratio.

    .venv/bin/python -m bench.dashboard [--db sqlite|postgres|both] [--customers 100000]
                                        [--purchases 1000000]
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

from bench.segments import generate
from bench.sync import _app, _fresh
from console import users
from console.views import dashboard_figures
from crm.db import db
from loyalty import settings

LEDGER = """
INSERT INTO loyalty_ledger (customer_id, kind, cause, points, pending, balance_after,
                            purchase_id, occurred_at, created_at)
SELECT customer_id, 'earn', 'purchase', paid / 100, 0, 0, id, occurred_at, created_at
FROM purchases
UNION ALL
SELECT customer_id, 'redeem', 'purchase', -50, 0, 0, id, occurred_at, created_at
FROM purchases WHERE id % 10 = 0
"""
ACCOUNTS = """
INSERT INTO loyalty_accounts (customer_id, balance, pending, lifetime, tier_id, updated_at)
SELECT customer_id, sum(points), 0, sum(CASE WHEN points > 0 THEN points ELSE 0 END),
       CASE WHEN sum(points) >= 2000 THEN :gold WHEN sum(points) >= 800 THEN :silver END,
       max(created_at)
FROM loyalty_ledger GROUP BY customer_id
"""


def seed(customers: int, purchases: int) -> None:
    generate(customers, purchases * 10 // 3)
    silver = settings.create_tier({"name": "Silver", "threshold_points": 800})
    gold = settings.create_tier({"name": "Gold", "threshold_points": 2000})
    db.session.commit()
    started = time.perf_counter()
    db.session.execute(text(LEDGER))
    db.session.execute(text(ACCOUNTS), {"silver": silver.id, "gold": gold.id})
    users.create_user("bench@example.com", "viewer", "bench password 123")
    db.session.commit()
    db.session.execute(text("ANALYZE"))
    db.session.commit()
    print(f"  ledger and accounts: {time.perf_counter() - started:.1f} s", flush=True)


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - started
    db.session.rollback()
    return elapsed


def measure(app, rounds: int) -> dict[str, float]:
    client = app.test_client()
    html = client.get("/console/login").get_data(as_text=True)
    token = re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)
    client.post("/console/login", data={"email": "bench@example.com",
                                        "password": "bench password 123", "csrf_token": token})
    assert client.get("/console/").status_code == 200  # warm: caches, plans
    times: dict[str, list[float]] = {"baseline": [], "figures": [], "page": []}
    for _ in range(rounds):
        times["baseline"].append(_timed(lambda: db.session.scalar(
            text("SELECT count(*) FROM purchases"))))
        times["figures"].append(_timed(dashboard_figures))
        times["page"].append(_timed(lambda: client.get("/console/")))
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--purchases", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    kinds = ("sqlite", "postgres") if args.db == "both" else (args.db,)
    results = []
    for kind in kinds:
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            app = _app(_fresh(kind, tmp, "bench_dashboard"), tmp)
            with app.app_context():
                print(f"{kind}: generating {args.customers} customers, {args.purchases} "
                      "purchases", flush=True)
                seed(args.customers, args.purchases)
                f = dashboard_figures()
                print(f"  {f['members']} members, {f['active_members']} active, "
                      f"{sum(d['purchases'] for d in f['sales'])} purchases in 90 days, "
                      f"liability {f['liability']['points']} points", flush=True)
                results.append((kind, measure(app, args.rounds)))
                db.engine.dispose()
    for kind, t in results:
        print(f"{kind}: dashboard figures {t['figures']:.3f} s, whole page {t['page']:.3f} s; "
              f"baseline count(*) over purchases {t['baseline']:.3f} s; ratio figures/baseline "
              f"{t['figures'] / t['baseline']:.1f}, page/baseline {t['page'] / t['baseline']:.1f}")


if __name__ == "__main__":
    main()
