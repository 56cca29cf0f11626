"""Shop member sync at scale: 100,000 shop members in batches of 1,000, posted to
POST /api/v1/customers/sync (in-process test client: routing, JSON, schemas and the
service all count), into a database that already holds 100,000 in-store customers, a
third of whom the shop members match by email or phone. Baseline, in the same run: a
plain DBAPI executemany of the same new rows (customers and their identifiers) into a
fresh copy of the schema.

    .venv/bin/python -m bench.sync [--members 100000] [--db sqlite|postgres|both]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import flask_migrate
import psycopg
from sqlalchemy import insert, make_url, text

from crm import create_app, keys
from crm.db import db
from crm.models import Customer, CustomerIdentifier, identifier_row
from crm.sync import sync_members

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
NOW = datetime(2026, 11, 25, tzinfo=UTC)


def _fresh(kind: str, tmp: Path, name: str) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp / name}.db"
    admin = make_url(PG.format(name="postgres")).set(drivername="postgresql")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        c.execute(f"CREATE DATABASE {name}")
    return PG.format(name=name)


def _phone(n: int) -> str:
    return f"+1415{2000000 + n:07d}"


def _app(url: str, tmp: Path):
    app = create_app({"DATABASE_URL": url, "INSTANCE_PATH": str(tmp), "LOG_LEVEL": "WARNING",
                      "RATELIMIT_ENABLED": False})
    with app.app_context():
        flask_migrate.upgrade()
    return app


def seed_in_store(count: int) -> None:
    """In-store customers: even ones known by email, odd ones by phone."""
    db.session.execute(insert(Customer), [
        {"id": n + 1, "first_name": "Store", "last_name": f"Customer{n}", "consent_sms": False,
         "consent_email": False, "created_at": NOW, "updated_at": NOW} for n in range(count)])
    db.session.execute(insert(CustomerIdentifier), [  # sealed, with their blind indexes
        {**identifier_row(n + 1, n + 1, "email" if n % 2 == 0 else "phone",
                          f"store{n}@example.com" if n % 2 == 0 else _phone(n)),
         "created_at": NOW}
        for n in range(count)])
    if db.engine.dialect.name == "postgresql":  # the ids above were given explicitly
        for table in ("customers", "customer_identifiers"):
            db.session.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                    f"(SELECT max(id) FROM {table}))"))
    db.session.commit()


def member(n: int, matching: int) -> dict:
    if n < matching:  # the same person as in-store customer n
        ident = {"email": f"store{n}@example.com"} if n % 2 == 0 else {"phone": _phone(n)}
    else:
        ident = {"email": f"shop{n}@example.com"}
    return {"external_id": f"W{n}", "first_name": "Shop", "last_name": f"Member{n}",
            "updated_at": "2026-11-20T10:00:00Z", **ident}


def run_sync(url: str, tmp: Path, count: int, over_http: bool = True) -> float:
    """Sync ``count`` members in batches of 1000, through HTTP (the test client) or by
    calling the service function (one transaction per batch, as the route does)."""
    app = _app(url, tmp)
    with app.app_context():
        seed_in_store(count)
        _, key = keys.create_key("bench", ["shop"])
        db.session.commit()
    client = app.test_client()
    headers = {"Authorization": f"Bearer {key}"}
    matching = count // 3
    members = [member(n, matching) for n in range(count)]
    batches = [members[start:start + 1000] for start in range(0, count, 1000)]
    # The shop encodes its requests and reads the answers on its own machine: both are
    # done outside the timed loop, which measures the service's work only.
    bodies = [json.dumps({"customers": batch}).encode() for batch in batches]
    answers = []
    started = time.perf_counter()
    for batch, body in zip(batches, bodies, strict=True):
        if over_http:
            r = client.post("/api/v1/customers/sync", headers=headers, data=body,
                            content_type="application/json")
            assert r.status_code == 200, r.get_data(as_text=True)[:500]
            answers.append(r.get_data())
        else:
            with app.app_context():
                answers.append(sync_members(batch))
                db.session.commit()
    elapsed = time.perf_counter() - started
    tally: dict[str, int] = {}
    for answer in answers:
        results = json.loads(answer)["results"] if over_http else answer
        for item in results:
            tally[item["result"]] = tally.get(item["result"], 0) + 1
    print(f"  results: {tally}")
    with app.app_context():
        db.engine.dispose()
    return elapsed


def run_plain(url: str, tmp: Path, count: int) -> float:
    """The floor: the same number of new customers and identifiers, by executemany."""
    app = _app(url, tmp)
    with app.app_context():
        seed_in_store(count)
        db.engine.dispose()
    dbapi_url = make_url(url)
    now = NOW.isoformat()
    customers = [(count + n + 1, "Shop", f"Member{n}", False, False, now, now)
                 for n in range(count)]
    identifiers = [(count + n + 1, "shop", f"W{n}", now) for n in range(count)] + [
        (count + n + 1, "email", f"shop{n}@example.com", now) for n in range(count)]
    started = time.perf_counter()
    if dbapi_url.drivername.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(dbapi_url.database)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        for start in range(0, count, 1000):
            conn.executemany("INSERT INTO customers (id, first_name, last_name, consent_sms, "
                             "consent_email, created_at, updated_at) VALUES (?,?,?,?,?,?,?)",
                             customers[start:start + 1000])
            conn.executemany("INSERT INTO customer_identifiers (customer_id, kind, lookup, "
                             "created_at) VALUES (?,?,?,?)",
                             identifiers[start:start + 1000] +
                             identifiers[count + start:count + start + 1000])
            conn.commit()
        conn.close()
    else:
        with psycopg.connect(dbapi_url.set(drivername="postgresql")
                             .render_as_string(hide_password=False)) as conn:
            for start in range(0, count, 1000):
                with conn.cursor() as cur:
                    cur.executemany("INSERT INTO customers (id, first_name, last_name, "
                                    "consent_sms, consent_email, created_at, updated_at) "
                                    "VALUES (%s,%s,%s,%s,%s,%s,%s)",
                                    customers[start:start + 1000])
                    cur.executemany("INSERT INTO customer_identifiers (customer_id, kind, "
                                    "lookup, created_at) VALUES (%s,%s,%s,%s)",
                                    identifiers[start:start + 1000] +
                                    identifiers[count + start:count + start + 1000])
                conn.commit()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    args = parser.parse_args()
    lines = []
    for kind in ("sqlite", "postgres"):
        if args.db not in (kind, "both"):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            print(f"{kind}: syncing {args.members} members into {args.members} in-store")
            http_s = run_sync(_fresh(kind, Path(tmp), "crm_bench_sync"), Path(tmp),
                              args.members)
            service_s = run_sync(_fresh(kind, Path(tmp), "crm_bench_service"), Path(tmp),
                                 args.members, over_http=False)
            plain_s = run_plain(_fresh(kind, Path(tmp), "crm_bench_plain"), Path(tmp),
                                args.members)
        n = args.members
        lines.append(f"{kind:<10} {n / http_s:>10,.0f} {n / service_s:>10,.0f} "
                     f"{n / plain_s:>14,.0f} {plain_s / http_s:>7.2f}")
    print(f"{'database':<10} {'HTTP /s':>10} {'service /s':>10} {'plain ins. /s':>14} "
          f"{'ratio':>7}  (ratio: HTTP sync to plain insert)")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
