"""Where a till's purchase spends its time: cProfile over purchases posted through
``app.test_client()`` (no gunicorn, no network), on a fresh SQLite database in a temporary
folder, or on PostgreSQL with ``--db postgres`` (a fresh database, dropped afterwards).

    .venv/bin/python -m bench.profile_pos [--requests 500] [--db sqlite|postgres]

Prints the mean time per request, then the functions with the most time of their own
and the most time including what they call.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.pos import PG_HOST, REDEEM_EVERY, REPO, pg_admin

MEMBERS = 200


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_pos")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--log-level", default="WARNING",
                        help="the app's LOG_LEVEL (INFO: one JSON line per request)")
    parser.add_argument("--save", metavar="FILE", help="save the pstats data to FILE")
    parser.add_argument("--sql", action="store_true",
                        help="also print the SQL statements of one redeeming purchase")
    parser.add_argument("--no-profile", action="store_true",
                        help="only time the requests, without cProfile")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="crm-profile-"))
    pg_name = f"crm_profile_{os.getpid()}"
    if args.db == "postgres":
        pg_admin(f"CREATE DATABASE {pg_name}")
        url = f"postgresql+psycopg://{PG_HOST}/{pg_name}"
    else:
        url = f"sqlite:///{tmp / 'crm.db'}"
    env = {**os.environ, "FLASK_APP": "wsgi", "DATABASE_URL": url,
           "INSTANCE_PATH": str(tmp / "instance"), "LOG_LEVEL": args.log_level,
           "RATELIMIT_DEFAULT": "1000000 per minute"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    try:
        subprocess.run([sys.executable, "-m", "flask", "db", "upgrade"], cwd=REPO, env=env,
                       check=True, capture_output=True)
        os.environ.update({k: env[k] for k in ("DATABASE_URL", "INSTANCE_PATH", "LOG_LEVEL",
                                               "RATELIMIT_DEFAULT")})
        from bench.seed import sale, seed

        key = seed(MEMBERS, 100_000)["pos_key"]
        from crm import create_app

        app = create_app()
        client = app.test_client()
        headers = {"Authorization": f"Bearer {key}"}
        at = (datetime.now(UTC) - timedelta(minutes=1)).replace(microsecond=0).isoformat()
        rng = random.Random(1)

        def post(n: int) -> None:
            body = sale(rng, f"p-{n}", MEMBERS, at, redeem=n % REDEEM_EVERY == 0)
            r = client.post("/api/v1/purchases", json=body, headers=headers)
            if r.status_code != 201:
                raise SystemExit(f"{r.status_code}: {r.get_data(as_text=True)}")

        for n in range(50):  # warm-up: imports, caches, compiled statements
            post(-n - 1)
        statements: list[str] = []
        with app.app_context():
            from sqlalchemy import event

            from crm.db import db

            engine = db.engine

        def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
            statements.append(" ".join(statement.split()))

        event.listen(engine, "before_cursor_execute", count)
        post(-1000)  # a redeeming one (n % 5 == 0)
        event.remove(engine, "before_cursor_execute", count)
        print(f"SQL statements for one redeeming purchase: {len(statements)} "
              "(the COMMIT not counted)")
        if args.sql:
            for statement in statements:
                print(f"  {statement[:160]}")
        profiler = cProfile.Profile()
        started = time.perf_counter()
        if not args.no_profile:
            profiler.enable()
        for n in range(args.requests):
            post(n)
        profiler.disable()
        elapsed = time.perf_counter() - started
        print(f"{args.requests} purchases on {args.db} through the test client, one at a "
              f"time: {elapsed / args.requests * 1000:.2f} ms each"
              + ("" if args.no_profile else " under cProfile (which slows it down)"))
        if args.save and not args.no_profile:
            profiler.dump_stats(args.save)
        for order in () if args.no_profile else ("tottime", "cumulative"):
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(order)
            stats.print_stats(args.top)
            print(f"\n=== by {order} ===")
            print(out.getvalue().split("\n\n", 1)[-1])
        engine.dispose()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if args.db == "postgres":
            pg_admin(f"DROP DATABASE IF EXISTS {pg_name} WITH (FORCE)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
