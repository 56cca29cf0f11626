"""SQLite's WAL checkpoints, off the request path.

In WAL mode every commit appends its pages to the ``-wal`` file, and a checkpoint copies
them back into the database file (and syncs both). Left to SQLite, the commit that takes
the WAL past ``wal_autocheckpoint`` pages runs the checkpoint itself: every few dozen
sales one till waits for a copy and two fsyncs, which is the tail of the sale's latency.
Instead each process runs one thread per database file that checkpoints every
``SQLITE_CHECKPOINT_SECONDS`` (PASSIVE: it never waits for readers or writers and copies
what it can), and the app's connections keep SQLite's own checkpoint only as a fallback,
at ``FALLBACK_PAGES``, should the thread fall behind.

The thread keeps its one connection open for the life of the process: closing a
connection to a file drops every POSIX lock the process holds on it, which would corrupt
the database under the process's other connections (SQLite's "How To Corrupt", 2.2). It
stops when the file it was started for is gone (a test's database removed).
PostgreSQL and in-memory SQLite have nothing to do here.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from typing import Any

from flask import Flask
from sqlalchemy import event

FALLBACK_PAGES = 10_000  # 40 MB of WAL with 4 KiB pages
_lock = threading.Lock()
_running: dict[tuple[int, str], threading.Thread] = {}  # (pid, path)
log = logging.getLogger(__name__)


def init_app(app: Flask, engine: Any) -> None:
    """Checkpoint ``engine``'s SQLite file in the background, from the process that first
    connects to it (a forked worker starts its own)."""
    database, interval = engine.url.database, float(app.config["SQLITE_CHECKPOINT_SECONDS"])
    if engine.dialect.name != "sqlite" or database in (None, "", ":memory:") or interval <= 0:
        return
    path = os.path.abspath(database)

    @event.listens_for(engine, "connect")
    def _connected(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute(f"PRAGMA wal_autocheckpoint={FALLBACK_PAGES}")
        start(path, interval)


def start(path: str, interval: float) -> None:
    """Start this process's checkpointer of ``path`` unless it runs already."""
    key = (os.getpid(), path)
    with _lock:
        thread = _running.get(key)
        if thread is not None and thread.is_alive():
            return
        thread = threading.Thread(target=_checkpoint, args=(path, interval),
                                  name="sqlite-checkpoint", daemon=True)
        _running[key] = thread
        thread.start()


def running(path: str) -> bool:
    thread = _running.get((os.getpid(), os.path.abspath(path)))
    return thread is not None and thread.is_alive()


def _checkpoint(path: str, interval: float) -> None:
    try:
        inode = os.stat(path).st_ino
    except OSError:
        return
    # Never closed while the file exists (see above); autocommit, so that it holds no
    # read transaction between checkpoints.
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                 timeout=0)
    while True:
        time.sleep(interval)
        try:
            if os.stat(path).st_ino != inode:
                break
        except OSError:
            break
        try:
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as e:  # another process checkpointing: the next turn
            log.debug("checkpoint skipped: %s", e)
    connection.close()  # the file is gone or replaced: no lock of the live file is held
