"""Webhook delivery throughput: 10,000 queued deliveries (one endpoint, events of a
realistic size) sent by the deliver-webhooks job of `flask scheduler run` (a process of
its own, as in production: claims, signing,
the address check on every send, WEBHOOK_CONCURRENCY requests in flight, a new
connection per delivery, the outcome of every attempt written) to a local receiver
(another process). It prints deliveries/s, the scheduler's peak RSS, and checks that
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
from crm.db import db
from crm.sql import bulk_insert

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


def _unsettled(app) -> int:
    with app.app_context():
        left = db.session.scalar(select(func.count()).select_from(WebhookDelivery).where(
            WebhookDelivery.status.in_(("queued", "sending"))))
        db.session.rollback()
        return left


def run_scheduler(app, url: str, tmp: Path, port: int, count: int) -> tuple[float, int]:
    """`flask scheduler run` until the receiver has every delivery; its peak RSS."""
    env = {**os.environ, "DATABASE_URL": url, "FLASK_APP": "wsgi", "LOG_LEVEL": "WARNING",
           "INSTANCE_PATH": str(tmp), "SECRET_KEY": "bench", "WEBHOOK_ALLOW_PRIVATE": "1",
           "WEBHOOK_CONCURRENCY": str(CONCURRENCY), "WEBHOOK_DELIVER_INTERVAL_SECONDS": "1",
           "SMS_SEND_INTERVAL_SECONDS": "3600", "QUIET_HOURS": "none"}
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "flask", "scheduler", "run"], env=env,
                               stdout=subprocess.DEVNULL)
    try:
        while _stats(port)["requests"] < count:
            if process.poll() is not None or time.perf_counter() - started > 1800:
                raise RuntimeError("the scheduler stopped or took too long")
            time.sleep(0.2)
        elapsed = time.perf_counter() - started
        for _ in range(300):  # the job records the last batch
            if not _unsettled(app):
                break
            time.sleep(0.2)
        status = Path(f"/proc/{process.pid}/status").read_text()
        peak_kb = int(next(line.split()[1] for line in status.splitlines()
                           if line.startswith("VmHWM:")))
    finally:
        process.terminate()
        process.wait(timeout=60)
    return elapsed, peak_kb // 1024  # MB


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
            elapsed, rss = run_scheduler(app, url, tmp, port, count)
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
    print(f"  scheduler:    {elapsed:7.1f} s  {count / elapsed:8.0f} deliveries/s with the "
          f"process's start; {count / window:6.0f}/s from first to last arrival")
    print(f"                the scheduler's peak RSS {rss} MB")
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
