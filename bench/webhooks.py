"""Webhook delivery throughput: 10,000 queued deliveries (one endpoint, events of a
realistic size) sent by `flask webhooks deliver` (a process of its own: claims, signing,
the address check on every send, WEBHOOK_CONCURRENCY requests in flight, a new
connection per delivery, the outcome of every attempt written) to a local receiver
(another process). It prints deliveries/s, that process's peak RSS, and checks that
every delivery arrived exactly once.

Baseline, in the same run: the receiver driven directly, the same number of POSTs of
the same bodies from a pool of as many threads with http.client, no database, no
signing: how fast the receiver takes requests. A ratio near 1 means delivery is limited
by the receiver, not by us.

    .venv/bin/python -m bench.webhooks [--events 10000] [--db sqlite|postgres]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from bench.sms import _port
from bench.sync import _app, _fresh
from campaigns import hooks
from campaigns.hook_models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from crm.db import bulk_insert, db

NOW = datetime.now(UTC) - timedelta(seconds=1)
CONCURRENCY = 16


def _receiver() -> tuple[subprocess.Popen[bytes], int]:
    port = _port()
    process = subprocess.Popen([sys.executable, "-m", "tests.webhook_receiver", "--port",
                                str(port)], stdout=subprocess.DEVNULL)
    for _ in range(200):
        try:
            _stats(port)
            return process, port
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the receiver did not start")


def _stats(port: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stats", timeout=5) as r:
        return json.load(r)


def _body(n: int) -> str:
    return json.dumps({"type": "purchase.recorded", "timestamp": NOW.isoformat(), "data": {
        "purchase_id": n, "store_id": 1, "receipt_id": f"R{n:08d}",
        "occurred_at": NOW.isoformat(), "currency": "EUR", "total": "42.50",
        "discount": "0.00", "paid": "42.50", "returned_paid": "0.00", "points_earned": 42,
        "points_pending": 0, "points_redeemed": 0, "points_reversed": 0,
        "customer_id": n, "sequence": 1}}, separators=(",", ":"))


def seed(count: int, port: int) -> None:
    db.session.add(WebhookEndpoint(id=1, url=f"http://127.0.0.1:{port}/hooks",
                                   event_types=["*"], enabled=True, secret=hooks.new_secret()))
    db.session.flush()
    for start in range(0, count, 5_000):
        ids = range(start + 1, min(start + 5_000, count) + 1)
        bulk_insert(WebhookEvent.__table__, [
            {"id": n, "msg_id": f"msg_{uuid.uuid4().hex}", "type": "purchase.recorded",
             "customer_id": n, "sequence": 1, "body": _body(n), "created_at": NOW}
            for n in ids])
        bulk_insert(WebhookDelivery.__table__, [
            {"id": n, "event_id": n, "endpoint_id": 1, "status": "queued", "attempts": 0,
             "next_attempt_at": NOW, "created_at": NOW, "updated_at": NOW} for n in ids])
    db.session.commit()


def run_delivery(url: str, tmp: Path) -> tuple[float, int, str]:
    env = {**os.environ, "DATABASE_URL": url, "FLASK_APP": "wsgi", "LOG_LEVEL": "WARNING",
           "INSTANCE_PATH": str(tmp), "SECRET_KEY": "bench", "WEBHOOK_ALLOW_PRIVATE": "1",
           "WEBHOOK_CONCURRENCY": str(CONCURRENCY)}
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "flask", "webhooks", "deliver",
                                "--budget", "3600"], env=env, stdout=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    output = process.stdout.read().decode().strip() if process.stdout else ""
    if status != 0:
        raise RuntimeError(f"the delivery run failed: {status}")
    return elapsed, usage.ru_maxrss // 1024, output  # MB


def run_bare(port: int, count: int) -> float:
    def send(n: int) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("POST", "/hooks", body=_body(n).encode(), headers={
                "Content-Type": "application/json", "webhook-id": f"msg_bare_{n}",
                "webhook-timestamp": str(int(time.time())), "webhook-signature": "v1,x"})
            answer = conn.getresponse()
            answer.read()
            return answer.status
        finally:
            conn.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        statuses = list(pool.map(send, range(1, count + 1)))
    assert statuses.count(200) == count
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    args = parser.parse_args()
    count = args.events
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        url = _fresh(args.db, tmp, "bench_webhooks")
        app = _app(url, tmp)
        receiver, port = _receiver()
        try:
            with app.app_context():
                seed(count, port)
            elapsed, rss, output = run_delivery(url, tmp)
            stats = _stats(port)
        finally:
            receiver.terminate()
        with app.app_context():
            statuses = dict(db.session.execute(
                select(WebhookDelivery.status, func.count())
                .group_by(WebhookDelivery.status)).all())
            db.engine.dispose()
        receiver, port = _receiver()
        try:
            bare = run_bare(port, count)
        finally:
            receiver.terminate()
    exactly_once = stats["requests"] == stats["distinct"] == count == statuses.get("succeeded")
    print(f"{count} webhook deliveries, {args.db}, {CONCURRENCY} requests in flight "
          f"(machine: {os.cpu_count()} cores, shared)")
    window = stats["last"] - stats["first"]
    print(f"  delivery job: {elapsed:7.1f} s  {count / elapsed:8.0f} deliveries/s with the "
          f"process's start; {count / window:6.0f}/s from first to last arrival")
    print(f"                peak RSS {rss} MB  {output}")
    print(f"  bare client:  {bare:7.1f} s  {count / bare:8.0f} requests/s  (no database)")
    print(f"  ratio job/bare: {bare / window:.2f} (first to last arrival), "
          f"{bare / elapsed:.2f} (with the process's start)")
    print(f"  statuses: {statuses}; the receiver got {stats['requests']} "
          f"({stats['distinct']} distinct ids): "
          f"{'each exactly once' if exactly_once else 'WRONG'}")
    if not exactly_once:
        sys.exit(1)


if __name__ == "__main__":
    main()
