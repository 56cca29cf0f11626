"""Twilio, through its own client: send a message, and look one up. Every answer is
sorted into what the outbox needs to know: accepted, try again later, refused for good,
or unknown (Twilio may or may not have the message)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import requests
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

# Twilio answers that mean "never with this number": invalid or unreachable numbers,
# the number opted out, the message can never be delivered as it is.
PERMANENT_STATUSES = range(400, 500)
RETRY_STATUSES = {408, 409, 429}
# Our account or settings are wrong (credentials, account, sender): no message is at
# fault, so none fails; sending stops until it is fixed.
HALT_STATUSES = {401, 403, 404}


@dataclass(frozen=True)
class Outcome:
    kind: str  # accepted, retry, failed, in_doubt, halt (and release, defer: not sent)
    sid: str | None = None
    status: str | None = None
    code: str | None = None
    error: str | None = None
    until: datetime | None = None  # defer: not before then


def classify(exc: Exception) -> Outcome:
    """What an exception from the client says about whether Twilio has the message."""
    if isinstance(exc, TwilioRestException):
        code = str(exc.code) if exc.code else None
        text = f"Twilio {exc.status}: {exc.msg}"[:300]
        if exc.status in RETRY_STATUSES:
            return Outcome("retry", code=code or str(exc.status), error=text)
        if exc.status in HALT_STATUSES:
            return Outcome("halt", code=code or str(exc.status), error=text)
        if exc.status in PERMANENT_STATUSES:
            return Outcome("failed", code=code or str(exc.status), error=text)
        # 5xx: Twilio failed somewhere, perhaps after storing the message.
        return Outcome("in_doubt", code=code or str(exc.status), error=text)
    if isinstance(exc, requests.ConnectionError):
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        if isinstance(exc, requests.ConnectTimeout) or isinstance(
                reason, NewConnectionError | ConnectTimeoutError):
            return Outcome("retry", code="unreachable", error=str(exc)[:300])
        return Outcome("in_doubt", code="connection", error=str(exc)[:300])
    if isinstance(exc, requests.Timeout):
        return Outcome("in_doubt", code="timeout", error=str(exc)[:300])
    raise exc


class TwilioGateway:
    """One Twilio client per thread (the sender sends from a small thread pool)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.account_sid = config["TWILIO_ACCOUNT_SID"]
        self.auth_token = config["TWILIO_AUTH_TOKEN"]
        self.sender = {"messaging_service_sid": config["TWILIO_MESSAGING_SERVICE_SID"]} \
            if config["TWILIO_MESSAGING_SERVICE_SID"] else {"from_": config["TWILIO_FROM"]}
        self.base_url = config["TWILIO_API_BASE_URL"]
        self.timeout = config["SMS_TIMEOUT_SECONDS"]
        self._local = threading.local()

    @classmethod
    def configured(cls, config: dict[str, Any]) -> TwilioGateway | None:
        """None without credentials and a sender: messages then stay queued."""
        if not (config["TWILIO_ACCOUNT_SID"] and config["TWILIO_AUTH_TOKEN"]
                and (config["TWILIO_FROM"] or config["TWILIO_MESSAGING_SERVICE_SID"])):
            return None
        return cls(config)

    @property
    def client(self) -> Client:
        client = getattr(self._local, "client", None)
        if client is None:
            client = Client(self.account_sid, self.auth_token,
                            http_client=TwilioHttpClient(timeout=self.timeout))
            if self.base_url:
                client.api.base_url = self.base_url
            self._local.client = client
        return client

    def send(self, to: str, body: str, status_callback: str) -> Outcome:
        try:
            sent = self.client.messages.create(to=to, body=body,
                                               status_callback=status_callback,
                                               **self.sender)
        except Exception as exc:  # sorted by classify, others re-raised
            return classify(exc)
        return Outcome("accepted", sid=sent.sid, status=sent.status)

    def find(self, to: str, body: str, since: datetime, known: set[str]) -> Outcome | None:
        """Twilio's own record of a message like this one, created since ``since`` and
        not already matched to another row: how an unknown outcome is settled. None
        when Twilio has no such message; an exception when Twilio cannot be asked."""
        earliest = since - timedelta(minutes=2)  # clocks differ
        for found in self.client.messages.list(to=to, limit=100):
            created = found.date_created
            if (found.body == body and found.sid not in known
                    and (created is None or created >= earliest)):
                return Outcome("accepted", sid=found.sid, status=found.status)
        return None
