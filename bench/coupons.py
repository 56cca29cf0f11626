"""Time to make 100,000 coupon codes for one offer, through the service (random codes,
bulk insert, uniqueness check), against a plain executemany insert of as many
ready-made codes into the same table, in the same run.

    .venv/bin/python -m bench.coupons [--count 100000] [--db sqlite|postgres|both]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import flask_migrate
import psycopg
from sqlalchemy import insert, make_url

from crm import create_app
from crm.db import db, utcnow
from loyalty import coupons
from loyalty.models import Coupon

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/crm_bench_coupons"


def _fresh_postgres() -> str:
    admin = make_url(PG).set(drivername="postgresql", database="postgres")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS crm_bench_coupons WITH (FORCE)")
        c.execute("CREATE DATABASE crm_bench_coupons")
    return PG


def run(url: str, count: int, instance: Path) -> tuple[float, float]:
    app = create_app({"DATABASE_URL": url, "INSTANCE_PATH": str(instance),
                      "LOG_LEVEL": "WARNING"})
    with app.app_context():
        flask_migrate.upgrade()
        offer = coupons.create_offer({"name": "bench", "kind": "percent", "value": 10})
        db.session.commit()

        started = time.perf_counter()
        _, made = coupons.issue_codes(offer, count, prefix="B-")
        db.session.commit()
        service = time.perf_counter() - started
        assert len(set(made)) == count

        ready = [f"PLAIN{n:010d}" for n in range(count)]
        now = utcnow()
        started = time.perf_counter()
        db.session.execute(insert(Coupon), [
            {"offer_id": offer.id, "code": code, "batch": "plain", "max_uses": 1, "uses": 0,
             "created_at": now} for code in ready])
        db.session.commit()
        plain = time.perf_counter() - started
        db.engine.dispose()
    return service, plain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    args = parser.parse_args()
    print(f"{'database':<10} {'codes':>8} {'service s':>10} {'plain insert s':>15} {'ratio':>6}")
    for name in ("sqlite", "postgres"):
        if args.db not in (name, "both"):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/bench.db" if name == "sqlite" else _fresh_postgres()
            service, plain = run(url, args.count, Path(tmp))
        print(f"{name:<10} {args.count:>8} {service:>10.2f} {plain:>15.2f} "
              f"{service / plain:>6.2f}")


if __name__ == "__main__":
    main()
