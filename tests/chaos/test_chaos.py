"""Chaos kept in the suite (issue 18, point 13): a load of till sales against gunicorn
while (a) a worker is killed with SIGKILL, (b) PostgreSQL restarts. Every sale that
failed or whose outcome is unknown (a connection error, a 5xx such as a 503 with
Retry-After) is posted again with the same receipt until it is answered; then
``flask loyalty verify`` is clean and there are exactly as many purchases as distinct
receipts: nothing lost, nothing doubled. The failed requests and their answers are
printed (``pytest -s`` shows them).

(b) starts a PostgreSQL cluster of its own (initdb in a temporary folder, its own port),
so restarting it disturbs no other test; it runs in the suite's PostgreSQL pass.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import flask_migrate
import psycopg
import pytest
import requests
from sqlalchemy import func, select

from crm import create_app
from crm.db import db
from loyalty import settings
from loyalty.models import Purchase
from tests.factories import Factory
from tests.faults.servers import Gunicorn, free_port, gunicorn

ROOT = Path(__file__).resolve().parents[2]
SALES, CLIENTS = 240, 4
DONE = (200, 201)


def _wait_until(predicate: Callable[[], object], seconds: float, what: str) -> object:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            found = predicate()
        except (requests.RequestException, OSError, psycopg.Error):
            found = None
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


# The service under gunicorn with two workers (tests/faults/servers.py), with limits
# no load reaches and a fixed secret shared with ``flask loyalty verify``.
SERVER_ENV = {"LOG_LEVEL": "ERROR", "RATELIMIT_DEFAULT": "100000 per minute",
              "SECRET_KEY": "chaos"}


def _workers(server: Gunicorn) -> list[int]:
    pid = server.process.pid
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _sale(n: int, customer_id: int) -> dict:
    return {"receipt_id": f"CHAOS-{n:05d}", "occurred_at": datetime.now(UTC).isoformat(),
            "currency": "EUR", "total": "12.50", "customer": {"id": customer_id},
            "lines": [{"sku": "TEA", "category": "food", "quantity": 1, "unit_price": "12.50"}]}


def _answer(session: requests.Session, url: str, headers: dict, body: dict) -> str:
    """The status, and for a failure its content type and Retry-After: "503
    application/problem+json retry-after 1"."""
    try:
        r = session.post(url, json=body, headers=headers, timeout=30)
    except requests.RequestException as e:
        return f"connection error ({type(e).__name__})"
    if r.status_code in DONE:
        return str(r.status_code)
    return (f"{r.status_code} {r.headers.get('Content-Type')} "
            f"retry-after {r.headers.get('Retry-After')}")


def _acceptable(answer: str) -> bool:
    """A failure a client can act on: the connection dropped (the worker died), or a
    503 problem document telling it when to retry. Never an HTML page or a 500."""
    return answer.startswith("connection error") or answer == (
        "503 application/problem+json retry-after 1")


def _load(base: str, key: str, customers: list[int], fault: Callable[[], None],
          fault_after: int) -> dict[str, object]:
    """SALES sales from CLIENTS threads; ``fault()`` once ``fault_after`` are answered;
    then every one not answered 200/201 again with the same body until it is."""
    url, headers = f"{base}/api/v1/purchases", {"Authorization": f"Bearer {key}"}
    bodies = [_sale(n, customers[n % len(customers)]) for n in range(SALES)]
    first: dict[int, str] = {}
    lock, answered = threading.Lock(), threading.Event()

    def client(numbers: range) -> None:
        session = requests.Session()
        for n in numbers:
            status = _answer(session, url, headers, bodies[n])
            with lock:
                first[n] = status
                if len(first) >= fault_after:
                    answered.set()

    threads = [threading.Thread(target=client, args=(range(i, SALES, CLIENTS),))
               for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    answered.wait(120)
    fault()
    for thread in threads:
        thread.join(300)
    failed = {n: s for n, s in first.items() if s not in ("200", "201")}
    assert all(_acceptable(answer) for answer in failed.values()), Counter(failed.values())
    replays: Counter[str] = Counter()
    session = requests.Session()
    for n in sorted(failed):
        deadline = time.monotonic() + 60
        while True:
            status = _answer(session, url, headers, bodies[n])
            replays[status] += 1
            if status in ("200", "201") or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert status in ("200", "201"), (bodies[n]["receipt_id"], status)
    return {"first answers": Counter(first.values()), "failed": len(failed),
            "failed answers": Counter(failed.values()), "replay answers": replays,
            "receipts": {b["receipt_id"] for b in bodies}}


def _report(name: str, outcome: dict[str, object]) -> None:
    print(f"\n[chaos] {name}: {SALES} sales from {CLIENTS} clients; first answers "
          f"{dict(outcome['first answers'])}; failed or unknown {outcome['failed']}: "
          f"{dict(outcome['failed answers'])}; replays answered {dict(outcome['replay answers'])}")


def _seed(app) -> tuple[str, list[int]]:
    with app.app_context():
        settings.update_program({"currency": "EUR"})
        db.session.commit()
        factory = Factory(app)
        store = factory.store("CHAOS1", currency="EUR")
        key = factory.key("pos", store=store.code)
        customers = [factory.customer(first_name=f"C{i}").id for i in range(8)]
    return key, customers


def _purchases(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Purchase))


def _verify(database_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": database_url, "FLASK_APP": "wsgi",
           "SECRET_KEY": "chaos", "LOG_LEVEL": "WARNING"}
    result = subprocess.run([sys.executable, "-m", "flask", "loyalty", "verify"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_a_worker_killed_during_sales_loses_and_doubles_nothing(app, database_url, tmp_path):
    key, customers = _seed(app)
    killed: list[int] = []
    with gunicorn(database_url, tmp_path, workers=2, **SERVER_ENV) as server:
        def kill_a_worker() -> None:
            victim = _workers(server)[0]
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)

        outcome = _load(server.base, key, customers, kill_a_worker, SALES // 3)
        _wait_until(lambda: len(_workers(server)) == 2, 30, "gunicorn to replace the worker")
        assert killed and killed[0] not in _workers(server)
    _report(f"SIGKILL of gunicorn worker {killed[0]} ({app.config['DATABASE_URL'][:10]})",
            outcome)
    _verify(database_url)
    assert _purchases(app) == len(outcome["receipts"]) == SALES


# -- a PostgreSQL cluster of the test's own --------------------------------------------

def _as_postgres() -> Callable[[], None] | None:
    """PostgreSQL refuses to run as root: as root, run its tools as the postgres user."""
    if os.geteuid() != 0:
        return None
    user = pwd.getpwnam("postgres")

    def demote() -> None:
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)
    return demote


@pytest.fixture
def own_postgres(tmp_path_factory) -> Iterator[tuple[str, Callable[[], None]]]:
    """(URL, restart) of a throwaway cluster: initdb in a temporary folder, a free port,
    its socket in that folder; stopped and removed afterwards. Run in the suite's
    PostgreSQL pass only: the SQLite pass has no database server to restart."""
    if not os.environ.get("DATABASE_URL", "").startswith("postgresql"):
        pytest.skip("a PostgreSQL restart: in the suite's PostgreSQL pass")
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    assert initdb and pg_ctl, "PostgreSQL's initdb and pg_ctl must be installed"
    folder = Path(f"/tmp/crm-chaos-pg-{os.getpid()}-{time.monotonic_ns()}")
    folder.mkdir()
    demote = _as_postgres()
    if demote is not None:
        user = pwd.getpwnam("postgres")
        os.chown(folder, user.pw_uid, user.pw_gid)
    data, port = folder / "data", free_port()

    def tool(*args: str) -> None:
        subprocess.run(args, check=True, preexec_fn=demote, capture_output=True, timeout=120)

    tool(initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync")
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    tool(pg_ctl, "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start")
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/chaos"
    try:
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres",
                             autocommit=True) as conn:
            conn.execute("CREATE DATABASE chaos")
        yield url, lambda: tool(pg_ctl, "-D", str(data), "-o", options, "-l",
                                str(folder / "log"), "-m", "fast", "-w", "restart")
    finally:
        subprocess.run([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"],
                       preexec_fn=demote, capture_output=True, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_a_postgresql_restart_during_sales_loses_and_doubles_nothing(own_postgres, tmp_path):
    url, restart = own_postgres
    app = create_app({"DATABASE_URL": url, "INSTANCE_PATH": str(tmp_path),
                      "LOG_LEVEL": "WARNING", "SECRET_KEY": "chaos"})
    with app.app_context():
        flask_migrate.upgrade()
    key, customers = _seed(app)
    restarted: list[float] = []
    with gunicorn(url, tmp_path, workers=2, **SERVER_ENV) as server:
        def restart_postgres() -> None:
            started = time.monotonic()
            restart()
            restarted.append(time.monotonic() - started)

        outcome = _load(server.base, key, customers, restart_postgres, SALES // 3)
    _report(f"PostgreSQL restarted ({restarted[0]:.1f} s)", outcome)
    _verify(url)
    assert _purchases(app) == len(outcome["receipts"]) == SALES
    with app.app_context():
        db.engine.dispose()
