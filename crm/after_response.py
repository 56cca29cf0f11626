"""Work that must not be part of the request's transaction: run once the answer has been
sent, in an app context (so a database session and transaction) of its own.

Used for what must survive a request that fails (an alert about a refused key) and for
bookkeeping kept off the hot path (when a key was last used). The request's session is
closed by then, so on SQLite no lock is held across the two."""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Flask, Response, after_this_request, current_app, g, has_request_context

from crm.db import db, write_intent
from crm.observability import describe_exception

log = logging.getLogger("crm.after_response")


def defer(work: Callable[[], None]) -> None:
    """Run ``work()`` after this request's answer (outside a request: now), in its own
    app context; ``work`` commits what it writes."""
    app = current_app._get_current_object()
    if not has_request_context():
        _run(app, [work])
        return
    if "deferred_work" not in g:
        g.deferred_work = []
        pending = g.deferred_work

        @after_this_request
        def _schedule(response: Response) -> Response:
            response.call_on_close(lambda: _run(app, pending))
            return response
    g.deferred_work.append(work)


def _run(app: Flask, works: list[Callable[[], None]]) -> None:
    token = write_intent.set(True)  # these write (SQLite: BEGIN IMMEDIATE)
    try:
        for work in works:
            with app.app_context():
                try:
                    work()
                except Exception as e:  # bookkeeping must never break an answer sent
                    db.session.rollback()
                    log.error("deferred work failed: %s", describe_exception(e))
    finally:
        write_intent.reset(token)
