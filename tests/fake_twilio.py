"""A local stand-in for Twilio's Messages API, for tests, benchmarks and trying the
service by hand. The real ``twilio`` client talks to it (TWILIO_API_BASE_URL).

It checks the account's Basic auth, records every message it accepts, lists them as
Twilio does (``GET .../Messages.json?To=``), refuses invalid numbers (21211) and
opted-out ones (21610), and can misbehave on demand: answer errors, hang before or
after storing a message, or be down. With ``callbacks`` on, it posts signed status
callbacks (sent, then delivered) to each message's StatusCallback, as Twilio does.

    python -m tests.fake_twilio --port 8099 --callbacks     # serve, print each SMS
    python -m tests.fake_twilio reply +12125550004 "9 great"  # a signed inbound SMS
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import itertools
import json
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

from twilio.request_validator import RequestValidator

ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "fake-auth-token"
_sids = itertools.count(1)


@dataclass
class Misbehaviour:
    """What the next requests to create a message get (each counter counts down)."""
    errors: int = 0  # answered with `error_status`
    error_status: int = 503
    hang_before: int = 0  # hang (longer than the client waits) without storing
    hang_after: int = 0  # store the message, then hang: the client sees a timeout
    hang_seconds: float = 3.0
    down: bool = False  # every request: 503


@dataclass
class FakeTwilio:
    account_sid: str = ACCOUNT_SID
    auth_token: str = AUTH_TOKEN
    callbacks: bool = False
    echo: bool = False  # print each message (when run by hand)
    messages: list[dict[str, Any]] = field(default_factory=list)
    invalid: set[str] = field(default_factory=set)
    opted_out: set[str] = field(default_factory=set)
    trouble: Misbehaviour = field(default_factory=Misbehaviour)
    requests: int = 0

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    # -- running -----------------------------------------------------------------------
    def start(self, port: int = 0) -> str:
        handler = type("Handler", (_Handler,), {"fake": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self.url

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_port}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    # -- what tests look at --------------------------------------------------------------
    def sent_to(self, number: str) -> list[dict[str, Any]]:
        with self.lock:
            return [m for m in self.messages if m["to"] == number]

    def bodies(self) -> list[str]:
        with self.lock:
            return [m["body"] for m in self.messages]

    def signed_callback(self, message: dict[str, Any], status: str,
                        error_code: str | None = None) -> tuple[str, dict[str, str], str]:
        """The URL, form and signature Twilio would post for a status change."""
        form = {"MessageSid": message["sid"], "MessageStatus": status,
                "AccountSid": self.account_sid, "To": message["to"],
                "From": message.get("from") or ""}
        if error_code:
            form["ErrorCode"] = error_code
        url = message["status_callback"]
        return url, form, RequestValidator(self.auth_token).compute_signature(url, form)

    def signed_inbound(self, url: str, from_number: str, body: str,
                       sid: str | None = None) -> tuple[dict[str, str], str]:
        form = {"MessageSid": sid or f"SM{next(_sids):032x}", "From": from_number,
                "To": "+15550000000", "Body": body, "AccountSid": self.account_sid}
        return form, RequestValidator(self.auth_token).compute_signature(url, form)

    # -- the API -------------------------------------------------------------------------
    def create(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.requests += 1
            trouble = self.trouble
            if trouble.down:
                return 503, _error(503, 20503, "Service unavailable")
            if trouble.errors:
                trouble.errors -= 1
                return trouble.error_status, _error(trouble.error_status, 20500, "Trouble")
            hang = None
            if trouble.hang_before:
                trouble.hang_before -= 1
                hang = "before"
            elif trouble.hang_after:
                trouble.hang_after -= 1
                hang = "after"
        if hang == "before":
            time.sleep(trouble.hang_seconds)
            return 504, _error(504, 20504, "Too late")
        to = form.get("To", "")
        if not to.startswith("+") or to in self.invalid:
            return 400, _error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if to in self.opted_out:
            return 400, _error(400, 21610, "Attempt to send to unsubscribed recipient")
        message = {"sid": f"SM{next(_sids):032x}", "to": to, "from": form.get("From"),
                   "messaging_service_sid": form.get("MessagingServiceSid"),
                   "body": form.get("Body", ""), "status": "queued",
                   "status_callback": form.get("StatusCallback"),
                   "date_created": datetime.now(UTC)}
        with self.lock:
            self.messages.append(message)
        if self.echo:
            print(f"SMS to {to}: {message['body']}", flush=True)
        if hang == "after":
            time.sleep(trouble.hang_seconds)
        if self.callbacks and message["status_callback"]:
            threading.Thread(target=self._report, args=(message,), daemon=True).start()
        return 201, self.resource(message)

    def list(self, query: dict[str, list[str]]) -> dict[str, Any]:
        to = (query.get("To") or [None])[0]
        with self.lock:
            found = [m for m in self.messages if to is None or m["to"] == to]
        size = int((query.get("PageSize") or ["50"])[0])
        page = [self.resource(m) for m in reversed(found)][:size]
        return {"messages": page, "first_page_uri": "", "next_page_uri": None, "page": 0,
                "page_size": size, "previous_page_uri": None, "start": 0, "end": len(page),
                "uri": ""}

    def resource(self, m: dict[str, Any]) -> dict[str, Any]:
        return {"sid": m["sid"], "account_sid": self.account_sid, "to": m["to"],
                "from": m["from"], "messaging_service_sid": m["messaging_service_sid"],
                "body": m["body"], "status": m["status"], "direction": "outbound-api",
                "num_segments": "1", "date_created": format_datetime(m["date_created"]),
                "date_updated": format_datetime(m["date_created"]),
                "date_sent": None, "error_code": None, "error_message": None,
                "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{m['sid']}.json"}

    def _report(self, message: dict[str, Any]) -> None:
        for status in ("sent", "delivered"):
            time.sleep(0.05)
            message["status"] = status
            url, form, signature = self.signed_callback(message, status)
            request = urllib.request.Request(url, data=urlencode(form).encode(),
                                             headers={"X-Twilio-Signature": signature})
            with contextlib.suppress(OSError):  # Twilio gives up on a failed callback too
                urllib.request.urlopen(request, timeout=5).close()


def _error(status: int, code: int, message: str) -> dict[str, Any]:
    return {"code": code, "message": message, "status": status,
            "more_info": f"https://www.twilio.com/docs/errors/{code}"}


class _Handler(BaseHTTPRequestHandler):
    fake: FakeTwilio
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go as two writes

    def log_message(self, *_: Any) -> None:
        pass

    def _authorised(self) -> bool:
        expected = base64.b64encode(
            f"{self.fake.account_sid}:{self.fake.auth_token}".encode()).decode()
        return self.headers.get("Authorization") == f"Basic {expected}"

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        with contextlib.suppress(OSError):  # the client gave up waiting
            self.wfile.write(data)

    def _messages_path(self) -> bool:
        return urlparse(self.path).path == \
            f"/2010-04-01/Accounts/{self.fake.account_sid}/Messages.json"

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        if not self._authorised():
            return self._answer(401, _error(401, 20003, "Authenticate"))
        if not self._messages_path():
            return self._answer(404, _error(404, 20404, "Not found"))
        self._answer(*self.fake.create(form))

    def do_GET(self) -> None:
        if self.path == "/_fake/stats":  # for benchmarks: what was accepted
            with self.fake.lock:
                bodies = [m["body"] for m in self.fake.messages]
            return self._answer(200, {"messages": len(bodies), "distinct": len(set(bodies)),
                                      "requests": self.fake.requests})
        if not self._authorised():
            return self._answer(401, _error(401, 20003, "Authenticate"))
        if not self._messages_path():
            return self._answer(404, _error(404, 20404, "Not found"))
        if self.fake.trouble.down:
            return self._answer(503, _error(503, 20503, "Service unavailable"))
        self._answer(200, self.fake.list(parse_qs(urlparse(self.path).query)))


def reply(argv: list[str]) -> None:
    """Post a signed inbound SMS to the service, as Twilio would, and print its answer."""
    parser = argparse.ArgumentParser(prog="python -m tests.fake_twilio reply")
    parser.add_argument("from_number", help="the customer's number, e.g. +12125550004")
    parser.add_argument("body", help="what the customer texts, e.g. '9 great service'")
    parser.add_argument("--url", default="http://localhost:5000/webhooks/twilio/inbound",
                        help="PUBLIC_BASE_URL + /webhooks/twilio/inbound")
    args = parser.parse_args(argv)
    form, signature = FakeTwilio().signed_inbound(args.url, args.from_number, args.body)
    request = urllib.request.Request(args.url, data=urlencode(form).encode(),
                                     headers={"X-Twilio-Signature": signature})
    with urllib.request.urlopen(request, timeout=10) as answer:
        print(answer.status, answer.read().decode())


def main() -> None:
    if sys.argv[1:2] == ["reply"]:
        return reply(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--callbacks", action="store_true",
                        help="post signed status callbacks (sent, delivered)")
    parser.add_argument("--quiet", action="store_true", help="do not print each message")
    args = parser.parse_args()
    fake = FakeTwilio(callbacks=args.callbacks, echo=not args.quiet)
    url = fake.start(args.port)
    print(f"fake Twilio on {url}: TWILIO_API_BASE_URL={url} TWILIO_ACCOUNT_SID={ACCOUNT_SID} "
          f"TWILIO_AUTH_TOKEN={AUTH_TOKEN} TWILIO_FROM=+15005550006", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()
