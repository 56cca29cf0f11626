"""A write request whose transaction the database aborted for a deadlock (40P01) or a
serialization failure (40001) runs once more, from the start, before an answer: such an
error means "another transaction won, try again", and the first attempt left nothing
behind (its transaction was rolled back whole).

Idempotency holds because only a request that had committed nothing yet is retried: a
request that committed part of its work and then failed is answered 503 with
Retry-After, and the client's retry is deduplicated as every retry is (receipt ids,
Idempotency-Key). A second failure is answered 503 too (crm/errors.py)."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, g, has_request_context, request
from prometheus_client import Counter
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from crm.db import db

log = logging.getLogger("crm.transactions")

RETRYABLE = {"40001": "serialization_failure", "40P01": "deadlock_detected"}
RETRIES = Counter("crm_transaction_retries", "Write requests retried after the database "
                  "aborted their transaction", ["reason"])


def sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE of a database error (PostgreSQL), if any."""
    orig = getattr(error, "orig", error)
    return getattr(orig, "sqlstate", None) or getattr(
        getattr(orig, "diag", None), "sqlstate", None)


@event.listens_for(Session, "after_commit")
def _count_commit(_session: Session) -> None:
    if has_request_context():
        g.commits = g.get("commits", 0) + 1


class RetryingFlask(Flask):
    """Flask whose write requests are retried once after a deadlock or a serialization
    failure (see the module's text)."""

    def dispatch_request(self) -> Any:
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return super().dispatch_request()
        commits = g.get("commits", 0)
        try:
            return super().dispatch_request()
        except DBAPIError as error:
            reason = RETRYABLE.get(sqlstate(error) or "")
            if reason is None or g.get("commits", 0) != commits:
                raise
        db.session.rollback()
        RETRIES.labels(reason=reason).inc()
        log.warning("transaction aborted (%s): the request runs once more", reason)
        return super().dispatch_request()
