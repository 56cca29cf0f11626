"""Messaging fixtures: the fake Twilio server, the app pointed at it, SMS members."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from campaigns import sender
from campaigns.models import Message
from crm.db import db
from tests.fake_twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio

PUBLIC = "https://crm.example.com"
_numbers = itertools.count(1)


@pytest.fixture
def twilio(app: Flask) -> Iterator[FakeTwilio]:
    """A fake Twilio, and the app configured to use it (restored afterwards)."""
    fake = FakeTwilio()
    url = fake.start()
    settings = {"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
                "TWILIO_FROM": "+15005550006", "TWILIO_API_BASE_URL": url,
                "PUBLIC_BASE_URL": PUBLIC, "SMS_RETRY_SECONDS": 0.0,
                "SMS_DOUBT_SECONDS": 0.0, "SMS_TIMEOUT_SECONDS": 2.0}
    saved = {name: app.config[name] for name in settings}
    app.config.update(settings)
    yield fake
    app.config.update(saved)
    fake.stop()


def new_number() -> str:
    return f"+1212555{next(_numbers):04d}"


@pytest.fixture
def member(factory: Any) -> Any:
    """make(consent=True, **fields): a customer with a phone number."""
    def make(consent: bool = True, **fields: Any) -> Any:
        fields.setdefault("phone", new_number())
        return factory.customer(consent={"sms": consent}, **fields)
    return make


def queue(customer: Any, body: str = "Hello", purpose: str = "campaign", **extra: Any
          ) -> int:
    from campaigns import outbox

    db.session.rollback()
    message = outbox.queue(customer, body, purpose, **extra)
    db.session.commit()
    return message.id


def drain(rounds: int = 1, **kwargs: Any) -> dict[str, int]:
    """Run the sender ``rounds`` times; the counts of the last run."""
    report: dict[str, int] = {}
    for _ in range(rounds):
        report = sender.send_outbox(**kwargs)
    db.session.rollback()
    return report


def message(message_id: int) -> Message:
    db.session.rollback()
    return db.session.get(Message, message_id, populate_existing=True)


def flask_process(database_url: str, *args: str, **env: str) -> subprocess.Popen[str]:
    """``flask <args>`` in a process of its own, on the test database."""
    environ = {**os.environ, "DATABASE_URL": database_url, "FLASK_APP": "wsgi",
               "LOG_LEVEL": "INFO", "QUIET_HOURS": "none", "SECRET_KEY": "test-secret",
               **env}
    return subprocess.Popen([sys.executable, "-m", "flask", *args], env=environ,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
