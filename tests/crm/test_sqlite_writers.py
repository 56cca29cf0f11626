"""Writers to one SQLite file queue on a flock (crm/db.py's ``WriterConnection``), and
the next one is let in only once the last one's COMMIT or ROLLBACK has run.

The engines here have no busy timeout, so a writer let in while SQLite's own write lock
is still taken fails at once ("database is locked") instead of sleeping in SQLite's busy
handler, which is what it would do in the app: a millisecond at least."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from crm.db import WriterConnection, write_intent

WRITES = 300


def _engine(path: Path):
    return create_engine(f"sqlite:///{path}", connect_args={"timeout": 0})


def _hammer(path: Path, rollback_every: int, failures: list[str], start: threading.Barrier
            ) -> None:
    engine = _engine(path)
    start.wait()
    try:
        for n in range(WRITES):
            try:
                with engine.connect() as conn:
                    conn.begin()
                    conn.execute(text("INSERT INTO t (n) VALUES (:n)"), {"n": n})
                    if rollback_every and n % rollback_every == 0:
                        conn.rollback()
                    else:
                        conn.commit()
            except OperationalError as e:
                failures.append(str(e.orig))
    finally:
        engine.dispose()


@pytest.mark.parametrize("rollback_every", [0, 3], ids=["commits", "with rollbacks"])
def test_the_next_writer_starts_after_the_last_one_has_committed(tmp_path, rollback_every):
    path = tmp_path / "writers.db"
    setup = _engine(path)
    with setup.begin() as conn:
        conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER)"))
    failures: list[str] = []
    start = threading.Barrier(3)
    threads = [threading.Thread(target=_hammer, args=(path, rollback_every, failures, start))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert failures == []
    with setup.connect() as conn:
        written = conn.execute(text("SELECT count(*) FROM t")).scalar()
    kept = WRITES - (len(range(0, WRITES, rollback_every)) if rollback_every else 0)
    assert written == 3 * kept
    setup.dispose()


def test_a_connection_back_in_the_pool_holds_no_writer_lock(tmp_path):
    """A transaction left open when its connection goes back to the pool is rolled back
    there, and the lock goes with it: the next writer gets in."""
    token = write_intent.set(True)  # a GET through the test client may have left it False
    try:
        _pool_check(tmp_path)
    finally:
        write_intent.reset(token)


def _pool_check(tmp_path: Path) -> None:
    engine = _engine(tmp_path / "pool.db")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER)"))
    conn = engine.connect()
    conn.begin()
    conn.execute(text("INSERT INTO t VALUES (1)"))
    dbapi_connection = conn.connection.dbapi_connection
    assert isinstance(dbapi_connection, WriterConnection)
    assert dbapi_connection.holds_writer_lock
    conn.close()  # without commit
    assert not dbapi_connection.holds_writer_lock
    other = _engine(tmp_path / "pool.db")
    with other.begin() as second:
        second.execute(text("INSERT INTO t VALUES (2)"))
        rows = second.execute(text("SELECT n FROM t")).scalars().all()
    assert rows == [2]
    other.dispose()
    engine.dispose()
