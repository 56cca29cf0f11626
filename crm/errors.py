"""Domain errors and their one mapping to HTTP: every error answer is
``application/problem+json`` (RFC 9457) with ``type``, ``title``, ``status``, ``detail``,
and for invalid input ``errors`` by field."""

from __future__ import annotations

import json as stdlib_json
import logging
import re
import sqlite3
import time
from http import HTTPStatus
from typing import Any

from flask import Flask, Response, current_app, g, json, request
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    PendingRollbackError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from crm.db import db
from crm.observability import describe_exception

log = logging.getLogger("crm.errors")

PROBLEM_TYPE = "urn:crm:problem:"


class DomainError(Exception):
    """Base of every error a service function raises on purpose."""

    status = 400
    slug = "bad-request"
    title = "Bad request"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class Invalid(DomainError):
    status, slug, title = 422, "validation-error", "The request is not valid"


class NotFound(DomainError):
    status, slug, title = 404, "not-found", "Not found"


class Conflict(DomainError):
    status, slug, title = 409, "conflict", "Conflict"


class Unauthorized(DomainError):
    status, slug, title = 401, "unauthorized", "Authentication required"


class Forbidden(DomainError):
    status, slug, title = 403, "forbidden", "Not allowed"


def get_or_404(model: type[Any], ident: int, what: str) -> Any:
    """The row with primary key ``ident``, or a NotFound naming ``what`` it is."""
    row = db.session.get(model, ident)
    if row is None:
        raise NotFound(f"No {what} has the id {ident}.")
    return row


def problem(
    status: int,
    title: str | None = None,
    detail: str | None = None,
    slug: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE + slug if slug else "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    if "request_id" in g:
        body["request_id"] = g.request_id
    body.update(extra)
    response = current_app.response_class(
        json.dumps(body), status=status, mimetype="application/problem+json"
    )
    response.headers.update(headers or {})
    return response


def _validation_errors(messages: Any) -> dict[str, Any]:
    """webargs reports errors by location ({"json": {...}, "query": {...}}); clients want
    them by field."""
    errors: dict[str, Any] = {}
    if isinstance(messages, dict):
        for location_errors in messages.values():
            if isinstance(location_errors, dict):
                errors.update(location_errors)
            else:
                errors.setdefault("_schema", []).extend(location_errors)
    return errors


def _what_failed(error: Exception) -> str:
    """A database error named without its statement or the values in it (PostgreSQL's
    DETAIL quotes them): the error's class and the constraint, if any."""
    orig = getattr(error, "orig", error)
    diag = getattr(orig, "diag", None)
    constraint = getattr(diag, "constraint_name", None) if diag is not None else None
    sqlstate = getattr(orig, "sqlstate", None)
    if constraint or sqlstate:
        return f"{type(orig).__name__} {sqlstate or ''} {constraint or ''}".strip()
    if isinstance(orig, sqlite3.Error):  # SQLite's messages name columns, never values
        return f"{type(orig).__name__}: {str(orig).splitlines()[0][:200]}"
    return type(orig).__name__


def http_problem(error: HTTPException) -> Response:
    """Turn any HTTPException (404, 405, 413, 429, webargs' 400/422 ...) into a problem."""
    status = error.code or 500
    data = getattr(error, "data", None) or {}
    headers = dict(data.get("headers") or {})
    if status >= 500:
        original = getattr(error, "original_exception", None)
        if original is not None:
            log.error("unhandled error: %s", describe_exception(original))
        return problem(status, detail="An unexpected error occurred; it has been logged.")
    if status == 405 and error.valid_methods:  # type: ignore[attr-defined]
        headers["Allow"] = ", ".join(error.valid_methods)  # type: ignore[attr-defined]
    if "messages" in data:
        errors = _validation_errors(data["messages"])
        if status == 400:
            return problem(400, "Malformed request body", "The body is not valid JSON.",
                           slug="malformed-body", headers=headers)
        return problem(
            status, Invalid.title, "Some fields are missing or not valid: see errors.",
            slug=Invalid.slug, headers=headers, errors=errors,
        )
    if status == 429:
        retry = error.get_response().headers.get("Retry-After")
        if retry:
            headers.setdefault("Retry-After", retry)
        return problem(429, detail=f"Rate limit exceeded ({error.description}).",
                       slug="rate-limited", headers=headers)
    detail = {
        404: "Nothing is at this address.",
        413: "The request body is too large.",
    }.get(status, error.description)
    return problem(status, detail=detail, headers=headers)


class UriTooLong(DomainError):
    status, slug, title = 414, "uri-too-long", "URI too long"


class HeadersTooLarge(DomainError):
    status, slug, title = 431, "headers-too-large", "Request header fields too large"


def refuse_oversized_request() -> None:
    """before_request: a URL past MAX_URL_BYTES is a 414, a header line past
    MAX_HEADER_BYTES or headers past MAX_HEADERS_BYTES together a 431, as problem
    documents (gunicorn's own limits, above these, answer the same way: crm/gunicorn_worker.py)."""
    config, environ = current_app.config, request.environ
    uri = environ.get("RAW_URI") or environ.get("REQUEST_URI") or (
        environ.get("PATH_INFO", "") + "?" + environ.get("QUERY_STRING", ""))
    if len(uri) > config["MAX_URL_BYTES"]:
        raise UriTooLong(f"The URL is longer than {config['MAX_URL_BYTES']} bytes: send "
                         "long values in a request body.")
    sizes = [len(name) + len(value) + 2 for name, value in request.headers.items()]
    if sizes and (max(sizes) > config["MAX_HEADER_BYTES"]
                  or sum(sizes) > config["MAX_HEADERS_BYTES"]):
        raise HeadersTooLarge(f"A header is longer than {config['MAX_HEADER_BYTES']} bytes, "
                              f"or all of them than {config['MAX_HEADERS_BYTES']}.")


class NulCharacter(DomainError):
    status, slug, title = 400, "nul-character", "Text with a NUL character"


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return any("\ud800" <= ch <= "\udfff" for ch in value)
    if isinstance(value, dict):
        return any(_lone_surrogate(k) or _lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_lone_surrogate(v) for v in value)
    return False


def refuse_unstorable_text() -> None:
    """before_request: text may not contain U+0000 (PostgreSQL cannot store it), nor an
    unpaired surrogate (no database can: UTF-8 cannot encode it). A JSON body can only
    carry one as a \\u escape, so only such bodies are parsed here to look closer."""
    data = request.get_data(cache=True)
    form_nul = request.mimetype == "application/x-www-form-urlencoded" and b"%00" in data
    if b"\\u0000" in data or b"\x00" in data or form_nul or "\x00" in \
            request.query_string.decode("utf-8", "replace").replace("%00", "\x00"):
        raise NulCharacter("Text may not contain the NUL character (\\u0000).")
    if _SURROGATE_ESCAPE.search(data):
        try:
            lone = _lone_surrogate(stdlib_json.loads(data))  # orjson refuses them
        except (ValueError, RecursionError):
            return  # not JSON: the endpoint's own parsing answers
        if lone:
            raise NulCharacter("Text may not contain an unpaired surrogate (\\ud800 to "
                               "\\udfff): encode characters beyond U+FFFF as a pair.")


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def _domain(error: DomainError) -> Response:
        headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else {}
        if "retry_after" in error.extra:
            headers["Retry-After"] = str(error.extra["retry_after"])
        return problem(error.status, error.title, error.detail, error.slug, headers,
                       **error.extra)

    @app.errorhandler(IntegrityError)
    def _integrity(error: IntegrityError) -> Response:
        # A unique or foreign key constraint caught what a check before the write could
        # not see: a concurrent request wrote the same thing first.
        db.session.rollback()
        log.info("integrity error answered 409: %s", _what_failed(error))
        return problem(409, Conflict.title,
                       "A concurrent request changed the same data; retry the request.",
                       slug="concurrent-write")

    @app.errorhandler(DataError)
    def _data(error: DataError) -> Response:
        # A value the database cannot hold (a number out of range...): the schemas
        # should have refused it; answer as the invalid input it is.
        db.session.rollback()
        log.warning("data error answered 422: %s", _what_failed(error))
        return problem(422, Invalid.title, "A value is out of the range that can be stored.",
                       slug="out-of-range")

    # psycopg's errors arrive wrapped as DBAPIError (SQLAlchemy's, and crm/sql.py wraps
    # the driver's own), so no handler of psycopg's, and no import of it in SQLite apps.
    @app.errorhandler(DBAPIError)
    @app.errorhandler(PendingRollbackError)
    @app.errorhandler(DisconnectionError)
    @app.errorhandler(PoolTimeout)
    @app.errorhandler(sqlite3.Error)
    def _database(error: Exception) -> Response:
        return database_problem(error)


_storage_full_at: float | None = None  # when this process last answered storage-full


def storage_full_within(seconds: float) -> bool:
    """Whether this process answered a storage-full problem in the last ``seconds``
    (/healthz keeps failing that long)."""
    return _storage_full_at is not None and time.monotonic() - _storage_full_at < seconds


def storage_full(error: BaseException) -> bool:
    """SQLite's SQLITE_FULL (disk or max_page_count), PostgreSQL's disk_full (53100)."""
    orig = getattr(error, "orig", error)
    if isinstance(orig, sqlite3.Error):
        return getattr(orig, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    return getattr(orig, "sqlstate", None) == "53100"


def database_problem(error: Exception) -> Response:
    """Any failure of the database under a request (lost connection, restart, lock or
    statement timeout, deadlock retried once already, a session left needing a
    rollback, the driver's own errors from crm/sql.py): 503 with Retry-After, or 507
    ``storage-full`` when the disk is full. Nothing of the statement or its values is
    logged or answered."""
    try:
        db.session.rollback()
    except Exception as e:  # the connection may be gone: the pool replaces it
        log.warning("rollback after a database error failed: %s", type(e).__name__)
    if storage_full(error):
        global _storage_full_at
        _storage_full_at = time.monotonic()
        g.retry_after = "60"
        log.error("storage full: %s", _what_failed(error))
        return problem(507, "Storage full",
                       "The database's disk is full: nothing was saved. Retry once an "
                       "operator has made room.", slug="storage-full",
                       headers={"Retry-After": "60"})
    log.error("database error: %s", _what_failed(error))
    g.retry_after = "1"
    return problem(503, detail="The database is busy or unreachable; retry shortly.",
                   slug="database-unavailable", headers={"Retry-After": "1"})
