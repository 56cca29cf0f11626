"""SQLite's WAL checkpoints run in a thread of each process, not in the request that
commits (crm/sqlite_checkpoints.py).

What the database file itself holds (without its WAL) is read in another process with
``immutable=1``: opening and closing the file in this process would drop the POSIX locks
its other connections hold on it."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest

from crm import sqlite_checkpoints
from crm.db import db

READ_FILE_ONLY = """
import sqlite3, sys
with sqlite3.connect(f"file:{sys.argv[1]}?immutable=1", uri=True) as c:
    try:
        print(c.execute(f"SELECT count(*) FROM {sys.argv[2]}").fetchone()[0])
    except sqlite3.OperationalError:  # no such table: not in the file yet
        print(-1)
"""


def rows_in_the_file(path: Path | str, table: str) -> int:
    done = subprocess.run([sys.executable, "-c", READ_FILE_ONLY, str(path), table],
                          capture_output=True, text=True, check=True, timeout=30)
    return int(done.stdout)


def wait_for(predicate, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_the_thread_copies_the_wal_into_the_file_and_stops_with_it(tmp_path):
    path = tmp_path / "wal.db"
    with closing(sqlite3.connect(path, isolation_level=None)) as writer:
        writer.execute("PRAGMA journal_mode=WAL")
        writer.execute("PRAGMA wal_autocheckpoint=0")  # only the thread checkpoints
        writer.execute("CREATE TABLE t (n INTEGER)")
        writer.executemany("INSERT INTO t VALUES (?)", [(n,) for n in range(500)])
        time.sleep(0.3)
        assert rows_in_the_file(path, "t") == -1  # all of it still in the WAL

        sqlite_checkpoints.start(str(path), 0.05)
        assert sqlite_checkpoints.running(str(path))
        assert wait_for(lambda: rows_in_the_file(path, "t") == 500)
        writer.execute("INSERT INTO t VALUES (500)")  # and it goes on
        assert wait_for(lambda: rows_in_the_file(path, "t") == 501)

        threads = threading.enumerate()
        sqlite_checkpoints.start(str(path), 0.05)  # a second start is the same thread
        assert threading.enumerate() == threads
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    assert wait_for(lambda: not sqlite_checkpoints.running(str(path)))


def test_the_app_checkpoints_in_the_background(app, till, factory):
    if db.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL has no WAL file to copy")
    path = db.engine.url.database
    customer = factory.customer()
    till.buy({"id": customer.id}, "10.00")
    assert sqlite_checkpoints.running(path)
    with db.engine.connect() as connection:  # SQLite's own: only past 40 MB of WAL
        assert connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == \
            sqlite_checkpoints.FALLBACK_PAGES
    for n in range(5):
        till.buy({"id": customer.id}, "12.00", receipt_id=f"bg-{n}")
    assert wait_for(lambda: rows_in_the_file(path, "purchases") == 6)
    assert wait_for(lambda: rows_in_the_file(path, "loyalty_ledger") == 6)
