"""/healthz's checks and the answers to database failures under a request (issue 18,
points 8 and 9), on the test database (SQLite or PostgreSQL) and, for a full disk, on an
SQLite file in a small tmpfs mounted for the test."""

from __future__ import annotations

import contextlib
import subprocess
import threading
from pathlib import Path

import psycopg
import pytest
from flask import request
from sqlalchemy import make_url, text, update
from sqlalchemy.exc import IntegrityError

from campaigns.scheduler import HEARTBEAT
from crm import create_app, service_state
from crm.db import db
from crm.models import Store
from tests.faults.servers import free_port


def test_healthz_reports_each_check_and_the_scheduler_heartbeat(client, factory):
    r = client.get("/healthz")
    assert r.status_code == 200
    checks = r.json["checks"]
    assert checks["database"] == {"status": "ok"}
    assert checks["scheduler"] == {"status": "missing"}
    assert r.json["status"] == "degraded"  # no scheduler has beaten yet
    if db.engine.dialect.name == "sqlite":
        assert checks["disk"]["status"] == "ok" and checks["disk"]["free_bytes"] > 0
    else:
        assert "disk" not in checks
    assert "redis" not in checks  # memory:// limits: no Redis to check
    service_state.beat(HEARTBEAT, "node-1:42")
    db.session.commit()
    r = client.get("/healthz")
    assert r.json["status"] == "ok", r.json
    assert r.json["checks"]["scheduler"]["status"] == "ok"
    assert r.json["checks"]["scheduler"]["node"] == "node-1:42"
    ready = client.get("/healthz?ready")
    assert ready.status_code == 200 and set(ready.json["checks"]) <= {"database", "disk"}


def test_the_scheduler_writes_its_heartbeat(app, factory):
    from campaigns import scheduler

    stop = threading.Event()
    app.config["SCHEDULER_HEARTBEAT_SECONDS"] = 0.2
    thread = threading.Thread(target=scheduler.run, args=(app, stop), daemon=True)
    thread.start()
    try:
        for _ in range(100):
            db.session.rollback()
            at, node = service_state.last_beat(HEARTBEAT)
            if at is not None:
                break
            stop.wait(0.1)
    finally:
        stop.set()
        thread.join(timeout=30)
        app.config["SCHEDULER_HEARTBEAT_SECONDS"] = 10.0
    assert at is not None and node


def test_the_redis_check_reports_a_dead_redis(database_url, tmp_path):
    """In a process of its own: the limiter is one per process."""
    script = f"""
import json
from crm import create_app
app = create_app({{"DATABASE_URL": {database_url!r}, "INSTANCE_PATH": {str(tmp_path)!r},
                  "RATELIMIT_STORAGE_URI": "redis://127.0.0.1:{free_port()}/0",
                  "LOG_LEVEL": "CRITICAL"}})
client = app.test_client()
r = client.get("/healthz")
stores = client.get("/api/v1/stores").status_code
print(json.dumps([r.status_code, r.json["checks"]["redis"], stores]))
"""
    import json
    import sys

    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-3000:]
    status, redis, stores = json.loads(done.stdout.strip().splitlines()[-1])
    assert status == 200 and redis["status"] == "unreachable" and stores == 401


@pytest.fixture
def second_app(database_url, tmp_path):
    """Another app on the same database, to which a test adds a route of its own."""
    return create_app({"TESTING": False, "DATABASE_URL": database_url,
                       "INSTANCE_PATH": str(tmp_path), "LOG_LEVEL": "WARNING"})


def test_a_session_left_needing_a_rollback_is_a_503(second_app, factory):
    factory.store("AAA01")

    @second_app.post("/test/pending")
    def pending():
        db.session.add(Store(code="AAA01", name="again", timezone="UTC", channel="store",
                             currency="EUR"))
        with contextlib.suppress(IntegrityError):  # a bug: no rollback; the next use
            db.session.flush()  # of the session fails
        return {"stores": db.session.scalar(text("SELECT count(*) FROM stores"))}

    r = second_app.test_client().post("/test/pending")
    assert r.status_code == 503 and r.mimetype == "application/problem+json"
    assert r.headers["Retry-After"] == "1"
    assert r.json["type"].endswith("database-unavailable")


def test_a_deadlock_is_retried_once_and_both_writes_succeed(second_app, factory):
    """PostgreSQL: two requests lock two rows in opposite orders; the server aborts one,
    which runs again. SQLite cannot deadlock: its writers take the one write lock up
    front (BEGIN IMMEDIATE) and queue."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises writers (BEGIN IMMEDIATE): no deadlock to retry")
    one, two = factory.store("DLA01").id, factory.store("DLB01").id
    both_hold_one = threading.Barrier(2, timeout=10)
    attempts: list[str] = []

    @second_app.post("/test/lock")
    def lock():
        order = request.get_json()["order"]
        attempts.append(order[0] and str(order))
        for i, store_id in enumerate(order):
            db.session.execute(update(Store).where(Store.id == store_id)
                               .values(name=f"locked {len(attempts)}"))
            if i == 0 and len(attempts) <= 2:
                with contextlib.suppress(threading.BrokenBarrierError):
                    both_hold_one.wait()
        db.session.commit()
        return {"ok": True}

    answers: list[int] = []

    def post(order):
        answers.append(second_app.test_client().post("/test/lock", json={"order": order})
                       .status_code)

    threads = [threading.Thread(target=post, args=(o,)) for o in ([one, two], [two, one])]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(answers) == [200, 200]
    assert len(attempts) == 3  # one of them ran twice


def test_a_driver_error_in_the_hand_written_sale_sql_is_a_503(client, till, factory,
                                                                  database_url):
    """PostgreSQL: the sale's first statement (crm/sql.py, the receipt claim) waits for
    a lock another session holds, past lock_timeout: the driver's error is a 503."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite's driver errors under a sale: see the full-disk test below")
    name = make_url(database_url).database
    admin = make_url(database_url).set(drivername="postgresql").render_as_string(
        hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" SET lock_timeout = \'300ms\'')
    db.engine.dispose()
    try:
        with psycopg.connect(admin) as holder:
            holder.execute("LOCK TABLE purchases IN EXCLUSIVE MODE")
            r = till.buy(expect=None)
            holder.rollback()
        assert r.status_code == 503, r.get_json()
        assert r.mimetype == "application/problem+json" and r.headers["Retry-After"]
        assert till.buy().status_code == 201  # and the next sale goes through
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" RESET lock_timeout')
        db.engine.dispose()


@pytest.fixture
def small_disk(tmp_path):
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs for the full-disk test: {mounted.stderr}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_full_sqlite_disk_is_a_507_storage_full_and_healthz_sees_it(small_disk, tmp_path):
    """A real full disk under the SQLite file (whatever the suite's database is)."""
    script = f"""
import json, os
import flask_migrate
from crm import create_app
from crm.db import db
app = create_app({{"DATABASE_URL": "sqlite:///{small_disk}/crm.db",
                  "INSTANCE_PATH": {str(tmp_path / "instance")!r}, "LOG_LEVEL": "CRITICAL",
                  "HEALTH_MIN_FREE_BYTES": 0, "HEALTH_FULL_SECONDS": 2.0}})
with app.app_context():
    flask_migrate.upgrade()
    from crm.keys import create_key
    from crm.stores import create_store
    create_store({{"code": "NYC01", "name": "NYC", "timezone": "UTC", "channel": "store",
                  "currency": "USD"}})
    _, key = create_key("till", ["pos"], "NYC01")
    db.session.commit()
client = app.test_client()
headers = {{"Authorization": "Bearer " + key}}
filler = os.path.join({str(small_disk)!r}, "filler")
fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
try:
    while True:
        os.write(fd, b"x" * 4096)
except OSError:
    pass
os.close(fd)
# Sales go on while the WAL has room it used before (a checkpoint lets it start over);
# once the WAL must grow, or the checkpoint cannot grow the database, the disk is full.
answers = []
for i in range(400):
    r = client.post("/api/v1/purchases", headers=headers, json={{
        "receipt_id": f"R{{i}}", "occurred_at": "2026-12-01T10:00:00+00:00",
        "currency": "USD", "total": "10.00",
        "lines": [{{"sku": "S", "quantity": 1, "unit_price": "10.00"}}]}})
    answers.append([r.status_code, r.json.get("type"), r.headers.get("Retry-After")])
    if r.status_code == 507:
        break
health = client.get("/healthz")
os.remove(filler)
import time; time.sleep(2.1)
after = client.post("/api/v1/purchases", headers=headers, json={{
        "receipt_id": "R-after", "occurred_at": "2026-12-01T10:00:00+00:00",
        "currency": "USD", "total": "10.00",
        "lines": [{{"sku": "S", "quantity": 1, "unit_price": "10.00"}}]}})
print(json.dumps({{"answers": answers, "health": [health.status_code, health.json],
                  "after": after.status_code, "healthy": client.get("/healthz").status_code}}))
"""
    import json
    import sys

    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    full = [a for a in found["answers"] if a[0] == 507]
    assert full, found["answers"]
    assert all(a[0] in (201, 507) for a in found["answers"]), found["answers"]
    assert full[0][1] == "urn:crm:problem:storage-full" and full[0][2]
    status, body = found["health"]
    assert status == 503 and body["checks"]["disk"]["status"] == "full", body
    assert found["after"] == 201 and found["healthy"] == 200
