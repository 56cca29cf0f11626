"""The service under gunicorn with two workers: requests spread over both, and /metrics
adds up every worker's counts."""

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_workers_serve_and_metrics_cover_both(database_url, tmp_path, app):
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "INSTANCE_PATH": str(tmp_path),
           "BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "2", "LOG_LEVEL": "WARNING",
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    (tmp_path / "metrics").mkdir()
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{base}/healthz", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.2)
        session = requests.Session()
        for _ in range(40):
            assert session.get(f"{base}/healthz", timeout=5).status_code == 200
        text = requests.get(f"{base}/metrics", timeout=5).text
        count = re.search(r'crm_http_request_duration_seconds_count\{endpoint="health.healthz"'
                          r',method="GET",status="200"\} (\d+)', text)
        assert count and float(count.group(1)) >= 40, text[:2000]
        # Collectors that read the database when scraped are served by every worker too.
        assert re.search(r"^crm_held_returns_expired_total \d", text, re.M), text[-2000:]
    finally:
        server.terminate()
        server.wait(timeout=10)
