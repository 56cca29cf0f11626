"""gunicorn's sync worker, answering the requests gunicorn itself refuses (a request line
or headers past its limits, a malformed request) with a problem document instead of its
HTML page, and logging them without the request line (it may carry personal values).

The app refuses long URLs (414) and headers (431) itself below gunicorn's limits
(MAX_URL_BYTES, MAX_HEADER_BYTES, MAX_HEADERS_BYTES); this covers what is longer still."""

from __future__ import annotations

import json
import ssl
from http import HTTPStatus
from typing import Any

from gunicorn import util
from gunicorn.http import errors
from gunicorn.workers.sync import SyncWorker

PROBLEM_TYPE = "urn:crm:problem:"

_STATUS: list[tuple[type[BaseException] | tuple[type[BaseException], ...], int, str]] = [
    (errors.LimitRequestLine, 414, "uri-too-long"),
    (errors.LimitRequestHeaders, 431, "headers-too-large"),
    (errors.ExpectationFailed, 417, "expectation-failed"),
    (errors.UnsupportedTransferCoding, 501, "unsupported-transfer-coding"),
    (errors.ForbiddenProxyRequest, 403, "forbidden"),
    (ssl.SSLError, 403, "forbidden"),
    (errors.ConfigurationProblem, 500, "internal-error"),
    (errors.ParseException, 400, "malformed-request"),
]


def classify(error: BaseException) -> tuple[int, str]:
    """The status and problem slug of an error gunicorn met reading a request."""
    if isinstance(error, (errors.InvalidResponseHeader, errors.InvalidResponseHeaderName)):
        return 500, "internal-error"
    for kinds, status, slug in _STATUS:
        if isinstance(error, kinds):
            return status, slug
    return 500, "internal-error"


def problem_bytes(status: int, slug: str) -> bytes:
    title = HTTPStatus(status).phrase
    body = json.dumps({"type": PROBLEM_TYPE + slug, "title": title, "status": status,
                       "detail": "The server refused the request before reading it: "
                                 f"{title.lower()}."}).encode()
    head = (f"HTTP/1.1 {status} {title}\r\nConnection: close\r\n"
            f"Content-Type: application/problem+json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode("latin-1") + body


class ProblemSyncWorker(SyncWorker):
    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        status, slug = classify(exc)
        address = (addr or ("", -1))[0]
        if status == 500:
            self.log.error("error handling a request from ip=%s: %s", address,
                           type(exc).__name__)
        else:
            self.log.warning("invalid request from ip=%s: %s", address, type(exc).__name__)
        try:
            util.write_nonblock(client, problem_bytes(status, slug))
        except Exception:  # the client may have gone
            self.log.debug("failed to send the error answer")
