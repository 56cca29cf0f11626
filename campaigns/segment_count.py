"""A segment's preview (count and sample) bounded in time, and stoppable from another
thread: the console counts rules as they are typed, on up to millions of customers, and a
count nobody waits for any more must not keep the database busy (Mautic #6324, #9634).

PostgreSQL bounds the statements with ``SET LOCAL statement_timeout`` (this transaction
only) and stops one early with the driver's cancel; SQLite with a progress handler that
interrupts the statement once the deadline passes or a stop is asked for. Either way the
caller gets ``CountTimeout`` or ``CountStopped`` and the transaction is rolled back."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from campaigns import segments
from crm.db import db
from crm.errors import DomainError

PROGRESS_STEPS = 20_000  # SQLite virtual-machine steps between two looks at the clock


class CountTimeout(DomainError):
    status, slug, title = 503, "count-timeout", "The count took too long"


class CountStopped(DomainError):
    status, slug, title = 409, "count-stopped", "The count was stopped"


class Stopper:
    """Lets another thread stop the count running on this session's connection."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._cancel: Any = None

    def stop(self) -> None:
        self.event.set()
        cancel = self._cancel
        if cancel is not None:
            with suppress(Exception):
                cancel()


def bounded_preview(rule: Any, seconds: float, stopper: Stopper | None = None) -> dict:
    """``segments.preview(rule)`` within ``seconds``: an invalid rule raises ``Invalid``
    (naming the node) before anything runs."""
    segments.checked(rule)
    stopper = stopper or Stopper()
    if stopper.event.is_set():
        raise CountStopped("A newer count replaced this one.")
    deadline = time.monotonic() + seconds
    try:
        with _bounded(seconds, deadline, stopper):
            result = segments.preview(rule)
            return {"count": result["count"], "sample": list(result["sample"])}
    except DBAPIError as e:
        db.session.rollback()
        if stopper.event.is_set():
            raise CountStopped("A newer count replaced this one.") from None
        if _is_interruption(e):
            raise CountTimeout(f"The count took more than {seconds:g} s and was "
                               "stopped.") from None
        raise


def _is_interruption(error: DBAPIError) -> bool:
    name = type(error.orig).__name__
    return name == "QueryCanceled" or "interrupted" in str(error.orig).lower()


@contextmanager
def _bounded(seconds: float, deadline: float, stopper: Stopper) -> Iterator[None]:
    connection = db.session.connection()
    raw = connection.connection.driver_connection
    if connection.dialect.name == "postgresql":
        milliseconds = max(1, int(seconds * 1000))  # an int: nothing else reaches the text
        connection.execute(text(f"SET LOCAL statement_timeout = {milliseconds}"))
        stopper._cancel = raw.cancel
        try:
            yield
        finally:
            stopper._cancel = None
        return
    raw.set_progress_handler(
        lambda: int(stopper.event.is_set() or time.monotonic() > deadline), PROGRESS_STEPS)
    try:
        yield
    finally:
        raw.set_progress_handler(None, 0)
