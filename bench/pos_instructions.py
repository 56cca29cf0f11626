"""Instructions per till sale, the app against the stack baseline: a count, not a time.

    .venv/bin/python -m bench.pos_instructions [--members 200] [--requests 100,300]

bench/pos.py's ratios move with the machine (another tenant, the disk, the kernel):
on a shared host the same code has measured 0.64 one run and 0.75 the next. This
counts what is ours instead. It seeds a fresh SQLite database as bench/pos.py does
(bench/seed.py), then runs each of the app (`wsgi:app`, `POST /api/v1/purchases`) and
the stack baseline (`bench.stack_app:app`, `POST /api/v1/bench/purchases`) in a child
process under valgrind's callgrind, which posts LOW and then, in a second child on a
fresh copy of the database, HIGH sales through Flask's test client (every layer of the
request but gunicorn: auth, limits, metrics, logging, flask-smorest, the session), the
same sales as bench/purchases.lua (one line, a random member, one in five redeeming 50
points). The difference of the two counts over HIGH - LOW is the cost of one sale with
start-up cancelled; the counts repeat to within a fraction of a percent whatever else
the machine is doing. It prints millions of instructions per sale for both, the
loyalty work (their difference) and stack/app, the counterpart of bench/pos.py's
app/stack target (0.7). What it cannot see is time outside the process's own
instructions: the kernel's writes of the WAL and the disk, which bench/pos.py measures.

The children run with PYTHONHASHSEED=0 and SQLITE_CHECKPOINT_SECONDS=0 (SQLite's own
autocheckpoint instead of the checkpointer thread, whose timer would fire a different
number of times under valgrind's slowdown). Exit status 0 when every sale answered 2xx,
1 otherwise, 2 without valgrind.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.pos import POINTS, REDEEM_EVERY, REPO, copy_database, flask
from bench.seed import sale

SERVERS = {"app": ("wsgi", "/api/v1/purchases"),
           "stack": ("bench.stack_app", "/api/v1/bench/purchases")}


def sales(members: int, count: int) -> list[dict[str, object]]:
    """COUNT sales from a fixed seed: a child posting fewer posts the first of the same."""
    rng = random.Random(19)
    return [sale(rng, f"i-{n}", members, "2026-01-01T10:00:00+00:00",
                 redeem=n % REDEEM_EVERY == 0) for n in range(1, count + 1)]


def child(server: str, count: int, members: int, key: str) -> int:
    """Post COUNT sales in this process (the one callgrind counts)."""
    module, path = SERVERS[server]
    app = importlib.import_module(module).app
    client = app.test_client()
    headers = {"Authorization": f"Bearer {key}"}
    failed = sum(not client.post(path, json=body, headers=headers).status_code < 300
                 for body in sales(members, count))
    print(json.dumps({"failed": failed}))
    return 0 if failed == 0 else 1


def counted(server: str, count: int, seeded: Path, env: dict[str, str], tmp: Path,
            members: int, key: str) -> tuple[int, int]:
    """Instructions of a child posting COUNT sales on its own copy of the database."""
    run = tmp / f"{server}-{count}"
    run.mkdir()
    url = f"sqlite:///{run / 'crm.db'}"
    copy_database(f"sqlite:///{seeded}", url)
    out = run / "callgrind.out"
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
         sys.executable, "-m", "bench.pos_instructions", "--child", server,
         "--count", str(count), "--members", str(members), "--key", key],
        cwd=REPO, env={**env, "DATABASE_URL": url}, capture_output=True, text=True,
        timeout=3600)
    lines = out.read_text().splitlines() if out.exists() else []
    totals = [line for line in lines if line.startswith("totals:")]
    if done.returncode not in (0, 1) or not done.stdout.strip() or not totals:
        raise RuntimeError(f"the {server} child ({count} sales) failed:\n"
                           f"{done.stderr[-3000:]}")
    failed = json.loads(done.stdout.strip().splitlines()[-1])["failed"]
    return int(totals[0].split()[1]), failed


def low_high(text: str) -> tuple[int, int]:
    """LOW,HIGH: two counts of sales, 0 <= LOW < HIGH."""
    try:
        low, high = (int(n) for n in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("give two counts, LOW,HIGH") from None
    if not 0 <= low < high:
        raise argparse.ArgumentTypeError("needs 0 <= LOW < HIGH")
    return low, high


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=200)
    parser.add_argument("--requests", type=low_high, default=(100, 300),
                        help="LOW,HIGH sales per child (default 100,300)")
    parser.add_argument("--child", choices=sorted(SERVERS), help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.count, args.members, args.key)
    if shutil.which("valgrind") is None:
        print("valgrind is missing (Debian's package valgrind)", file=sys.stderr)
        return 2
    low, high = args.requests
    tmp = Path(tempfile.mkdtemp(prefix="crm-bench-instr-"))
    try:
        seeded = tmp / "seeded.db"
        env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        env.update({"FLASK_APP": "wsgi", "DATABASE_URL": f"sqlite:///{seeded}",
                    "INSTANCE_PATH": str(tmp / "instance"), "LOG_LEVEL": "WARNING",
                    "RATELIMIT_DEFAULT": "1000000 per minute", "PYTHONHASHSEED": "0",
                    "SQLITE_CHECKPOINT_SECONDS": "0"})
        flask(env, "db", "upgrade")
        done = subprocess.run([sys.executable, "-m", "bench.seed", str(args.members),
                               str(POINTS)], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=600, check=True)
        key = json.loads(done.stdout.strip().splitlines()[-1])["pos_key"]
        jobs = [(server, count) for server in SERVERS for count in (low, high)]
        print(f"callgrind: {len(jobs)} children ({low} and {high} sales, "
              f"{args.members} members), a few minutes", file=sys.stderr, flush=True)
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            counts = dict(zip(jobs, pool.map(
                lambda job: counted(*job, seeded, env, tmp, args.members, key), jobs),
                strict=True))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    per_sale = {server: (counts[server, high][0] - counts[server, low][0]) / (high - low)
                for server in SERVERS}
    failed = sum(failed for _, failed in counts.values())
    app, stack = per_sale["app"], per_sale["stack"]
    print(f"instructions per sale: app {app / 1e6:.3f} M, stack {stack / 1e6:.3f} M, "
          f"loyalty work {(app - stack) / 1e6:.3f} M")
    print(f"stack/app {stack / app:.3f} (the instruction count's app/stack target: "
          f"at least 0.7)")
    print(f"failed sales: {failed}")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
