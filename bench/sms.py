"""Draining the SMS outbox: 100,000 queued messages (to as many consenting customers)
sent by `flask messages send` (a process of its own, the real twilio client, 8 requests
in flight) to the fake Twilio server (another process). It prints messages/s, the
sender's peak RSS, and checks that every message was sent exactly once.

Baseline, in the same run: the same number of messages posted to a fresh fake server
by the same twilio client from a pool of as many threads, with no database at all:
how fast "Twilio" (here, the fake) takes messages. A ratio near 1 means sending is
limited by Twilio, not by us.

    .venv/bin/python -m bench.sms [--messages 100000] [--db sqlite|postgres]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from bench.sync import _app, _fresh
from campaigns.models import Message, message_columns
from crm.db import db
from crm.models import Customer
from crm.sql import bulk_insert
from tests.fake_twilio import ACCOUNT_SID, AUTH_TOKEN

NOW = datetime.now(UTC) - timedelta(seconds=1)
CONCURRENCY = 8


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fake() -> tuple[subprocess.Popen[bytes], str]:
    port = _port()
    process = subprocess.Popen([sys.executable, "-m", "tests.fake_twilio", "--port",
                                str(port), "--quiet"], stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(f"{url}/_fake/stats", timeout=1).close()
            return process, url
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the fake Twilio server did not start")


def _stats(url: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{url}/_fake/stats", timeout=5) as r:
        return json.load(r)


def seed(count: int) -> None:
    for start in range(0, count, 10_000):
        ids = range(start + 1, min(start + 10_000, count) + 1)
        bulk_insert(Customer.__table__, [
            {"id": n, "first_name": "Member", "consent_sms": True, "consent_email": False,
             "created_at": NOW, "updated_at": NOW} for n in ids])
        bulk_insert(Message.__table__, [
            {"id": n, "customer_id": n,
             **message_columns(n, f"+1415{3000000 + n:07d}",
                               f"Hello member {n}: 20% off this weekend. Reply STOP to opt out."),
             "purpose": "campaign", "status": "queued", "attempts": 0,
             "next_attempt_at": NOW, "created_at": NOW, "updated_at": NOW} for n in ids])
    db.session.commit()


def run_sender(url: str, twilio: str, tmp: Path) -> tuple[float, int]:
    env = {**os.environ, "DATABASE_URL": url, "FLASK_APP": "wsgi", "LOG_LEVEL": "WARNING",
           "INSTANCE_PATH": str(tmp), "SECRET_KEY": "bench", "QUIET_HOURS": "none",
           "TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
           "TWILIO_FROM": "+15005550006", "TWILIO_API_BASE_URL": twilio,
           "SMS_SEND_CONCURRENCY": str(CONCURRENCY),
           # The hourly SMS budget (campaigns/sms_budget.py) would hold a 100,000 drain.
           "SMS_HARD_CAP": "100000000", "SMS_BURST_LIMIT": "100000000"}
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "flask", "messages", "send",
                                "--budget", "3600"], env=env, stdout=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    print("  sender:", process.stdout.read().decode().strip() if process.stdout else "")
    if status != 0:
        raise RuntimeError(f"the sender failed: {status}")
    return elapsed, usage.ru_maxrss // 1024  # MB


def run_bare(twilio: str, count: int) -> float:
    clients = {}

    def client() -> Client:
        me = os.getpid(), __import__("threading").get_ident()
        if me not in clients:
            c = Client(ACCOUNT_SID, AUTH_TOKEN, http_client=TwilioHttpClient(timeout=10))
            c.api.base_url = twilio
            clients[me] = c
        return clients[me]

    def send(n: int) -> str:
        return client().messages.create(
            to=f"+1415{3000000 + n:07d}", from_="+15005550006",
            body=f"Hello member {n}: 20% off this weekend. Reply STOP to opt out.",
            status_callback=f"https://crm.example.com/webhooks/twilio/status?message_id={n}").sid

    started = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        sids = set(pool.map(send, range(1, count + 1)))
    assert len(sids) == count
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    args = parser.parse_args()
    count = args.messages
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        url = _fresh(args.db, tmp, "bench_sms")
        app = _app(url, tmp)
        with app.app_context():
            seed(count)
        fake, twilio = _fake()
        try:
            elapsed, rss = run_sender(url, twilio, tmp)
            stats = _stats(twilio)
        finally:
            fake.terminate()
        with app.app_context():
            statuses = dict(db.session.execute(
                select(Message.status, func.count()).group_by(Message.status)).all())
            db.engine.dispose()
        fake, twilio = _fake()
        try:
            bare = run_bare(twilio, count)
        finally:
            fake.terminate()
    exactly_once = stats["messages"] == stats["distinct"] == count == statuses.get("submitted")
    print(f"{count} messages, {args.db}, {CONCURRENCY} requests in flight")
    print(f"  outbox sender: {elapsed:7.1f} s  {count / elapsed:8.0f} msg/s  peak RSS {rss} MB")
    print(f"  bare client:   {bare:7.1f} s  {count / bare:8.0f} msg/s  (no database)")
    print(f"  ratio sender/bare: {bare / elapsed:.2f}")
    print(f"  statuses: {statuses}; fake Twilio accepted {stats['messages']} "
          f"({stats['distinct']} distinct): {'each exactly once' if exactly_once else 'WRONG'}")
    if not exactly_once:
        sys.exit(1)


if __name__ == "__main__":
    main()
