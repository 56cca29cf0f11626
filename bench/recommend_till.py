"""The till's recommendation call under load: `GET /api/v1/customers/{id}/recommendations
?limit=10` with a pos key, for random members with histories (bench/recommend.py's
structured data, the model refreshed), at CONNECTIONS connections against gunicorn (the
repository's gunicorn.conf.py, 2 workers), driven by wrk (bench/reads.lua). Baselines in
the same run, same server, same key: `GET /api/v1/products/{sku}` (the whole stack
around one primary-key read) and `GET /healthz` (no key, `SELECT 1`).

    .venv/bin/python -m bench.recommend_till [--db sqlite|postgres|both] [--seconds 10]
        [--connections 16] [--members 5000] [--server gunicorn|granian] [--smoke]

It prints p50/p99 and requests/s of each, the ratios to the baselines, whether the
target (p99 under 10 ms) is met, and the share of the CPUs other work took meanwhile
(the machine is shared; above 5% the figures are unreliable). It asserts no timing; exit
status 1 when a request failed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from sqlalchemy import text

from bench import recommend
from bench.pos import BUSY_WARNING, REPO, CpuWatch, Load, free_port, start_server, stop
from bench.sync import _app, _fresh
from crm import keys
from crm.db import db
from loyalty import products, recommendation_model, settings

LUA = Path(__file__).resolve().parent / "reads.lua"
TARGET_P99_MS = 10.0


def seed(url: str, tmp: Path, members: int) -> str:
    app = _app(url, tmp)
    with app.app_context():
        settings.update_program({"currency": "EUR"})
        db.session.execute(text(
            "INSERT INTO stores (code, name, timezone, channel, currency, created_at) "
            "VALUES ('B1', 'Bench', 'Europe/Paris', 'store', 'EUR', :t)"), {"t": recommend.NOW})
        _, key = keys.create_key("bench till", ["pos"], "B1")
        products.sync_products([
            {"sku": f"P{n:03d}", "name": f"Product {n}", "category": f"c{n % 20}",
             "price": "1.00", "currency": "EUR"} for n in range(recommend.SKUS)])
        db.session.commit()
        data, _ = recommend.baskets(members, True, seed=7)
        recommend.load(data)
        print(f"  model: {recommendation_model.refresh()}", file=sys.stderr, flush=True)
        db.session.commit()
        db.engine.dispose()
    return key


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--server", choices=("gunicorn", "granian"), default="gunicorn")
    parser.add_argument("--members", type=int, default=5000)
    parser.add_argument("--smoke", action="store_true", help="a few seconds, to see it work")
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.warmup, args.members, args.connections = 1, 0, 300, 4
    if shutil.which("wrk") is None:
        print("wrk is not installed", file=sys.stderr)
        return 2
    kinds = ("sqlite", "postgres") if args.db == "both" else (args.db,)
    paths = {"recommendations": "/api/v1/customers/%d/recommendations?limit=10",
             "product (baseline)": "/api/v1/products/P001",
             "healthz (baseline)": "/healthz"}
    results, failed = [], False
    for kind in kinds:
        tmp = Path(tempfile.mkdtemp(prefix="crm-bench-recommend-"))
        try:
            url = _fresh(kind, tmp, "bench_recommend_till")
            print(f"[{kind}] {args.members} members with histories", file=sys.stderr)
            key = seed(url, tmp, args.members)
            env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
            env.update({"FLASK_APP": "wsgi", "DATABASE_URL": url,
                        "INSTANCE_PATH": str(tmp / "instance"), "LOG_LEVEL": "WARNING",
                        "RATELIMIT_DEFAULT": "1000000 per minute", "PYTHONUNBUFFERED": "1"})
            port = free_port()
            proc, _log = start_server(args.server, "wsgi:app", env, port, tmp, kind,
                                      args.workers)
            try:
                for name, path in paths.items():
                    if args.warmup:
                        _wrk(port, args.warmup, args, key, proc.pid, path)
                    load = _wrk(port, args.seconds, args, key, proc.pid, path)
                    failed |= load.values["s2xx"] != load.values["requests"] \
                        or load.socket_errors > 0
                    results.append((kind, name, load))
            finally:
                stop(proc)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n{args.connections} connections, {args.workers} {args.server} workers, "
          f"{args.seconds} s each; a shared machine: see 'other CPU'")
    print(f"{'db':<9} {'call':<20} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'other CPU':>9}")
    for kind, name, load in results:
        print(f"{kind:<9} {name:<20} {load.rps:>8.0f} {load.p50_ms:>7.2f} {load.p99_ms:>7.2f} "
              f"{load.other_cpu:>8.0%}{'  (unreliable)' if load.other_cpu > BUSY_WARNING else ''}")
    for kind in kinds:
        mine = {name: load for k, name, load in results if k == kind}
        ours, base = mine["recommendations"], mine["product (baseline)"]
        print(f"{kind}: recommendations p99 {ours.p99_ms:.2f} ms "
              f"({'meets' if ours.p99_ms < TARGET_P99_MS else 'MISSES'} the 10 ms target); "
              f"p50 {ours.p50_ms / base.p50_ms:.2f}x and p99 {ours.p99_ms / base.p99_ms:.2f}x "
              "the one-read baseline's")
    if failed:
        print("some requests failed", file=sys.stderr)
    return 1 if failed else 0


def _wrk(port: int, seconds: int, args: argparse.Namespace, key: str, pid: int,
         path: str) -> Load:
    cmd = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{seconds}s",
           "--timeout", "10s", "-s", str(LUA), f"http://127.0.0.1:{port}",
           "--", str(args.members), key, path]
    watch = CpuWatch(pid)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120, cwd=REPO)
    other = watch.other_share()
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    values = {k: float(v) for k, v in (kv.split("=") for kv in line.split()[1:])}
    values["other_cpu"] = other
    return Load(values, done.stderr.strip())


if __name__ == "__main__":
    sys.exit(main())
