"""The recommendation model's refresh at scale: the segments benchmark's data (by
default 1,000,000 customers, 3,000,000 purchases, 10,000,000 lines over 400 days, 500
skus), then ``flask recommendations refresh``'s work in a process of its own, which
reports its time and its peak resident memory (VmHWM) next to the same process's
memory before the refresh (the interpreter, Flask, NumPy, SciPy: the baseline).

    .venv/bin/python -m bench.recommend_refresh [--db sqlite|postgres|both]
        [--customers 1000000] [--lines 10000000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.segments import generate
from bench.sync import _app, _fresh
from crm.db import db


def _peak_mb() -> float:
    """This process's peak resident memory: VmHWM (ru_maxrss would carry the parent's
    peak over the fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def refresh_only(url: str, tmp: str) -> None:
    """In the child: refresh once and print what it took."""
    from loyalty import recommendation_model

    app = _app(url, Path(tmp))
    with app.app_context():
        db.session.execute(db.select(1))
        before = _peak_mb()
        started = time.perf_counter()
        counts = recommendation_model.refresh()
        db.session.commit()
        elapsed = time.perf_counter() - started
    print(json.dumps({"seconds": round(elapsed, 1), "baseline_mb": round(before),
                      "peak_mb": round(_peak_mb()), **counts}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--lines", type=int, default=10_000_000)
    parser.add_argument("--refresh-only", nargs=2, metavar=("URL", "TMP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.refresh_only:
        refresh_only(*args.refresh_only)
        return
    kinds = ("sqlite", "postgres") if args.db == "both" else (args.db,)
    results = []
    for kind in kinds:
        with tempfile.TemporaryDirectory() as tmp_name:
            url = _fresh(kind, Path(tmp_name), "bench_recommend")
            app = _app(url, Path(tmp_name))
            with app.app_context():
                print(f"{kind}: generating {args.customers} customers, {args.lines} lines",
                      flush=True)
                generate(args.customers, args.lines)
                db.engine.dispose()
            child = subprocess.run(
                [sys.executable, "-m", "bench.recommend_refresh", "--refresh-only", url,
                 tmp_name], capture_output=True, text=True, check=True)
            results.append((kind, json.loads(child.stdout.strip().splitlines()[-1])))
    for kind, r in results:
        print(f"{kind}: refresh of {r['lines']} lines ({args.customers} customers, "
              f"{r['skus']} skus): {r['seconds']} s; peak RSS {r['peak_mb']} MB "
              f"(the same process before the refresh: {r['baseline_mb']} MB); "
              f"{r['related']} related rows, {r['popular']} best-seller rows")


if __name__ == "__main__":
    main()
