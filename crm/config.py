"""Configuration: defaults, overridden by environment variables, overridden by the
mapping given to ``create_app`` (tests use that). The variables are listed in API.md."""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DEFAULTS: dict[str, Any] = {
    "DATABASE_URL": None,  # None: sqlite file in the instance folder
    "SECRET_KEY": None,  # None: generated once into the instance folder
    # Root keys sealing personal data, "id:base64,id:base64" (the first seals, all open),
    # and the blind index key; None: the instance folder's pii_keys file (crm/pii.py).
    "PII_KEYS": None,
    "PII_INDEX_KEY": None,
    "DEFAULT_REGION": "US",
    "TWILIO_ACCOUNT_SID": None,
    "TWILIO_AUTH_TOKEN": None,
    "TWILIO_FROM": None,
    "TWILIO_MESSAGING_SERVICE_SID": None,
    "TWILIO_API_BASE_URL": None,
    "PUBLIC_BASE_URL": "http://localhost:5000",
    "RATELIMIT_STORAGE_URI": "memory://",
    "RATELIMIT_DEFAULT": "6000 per minute",
    "RATELIMIT_ENABLED": True,
    "COUPON_GUESS_LIMIT": "30 per minute",
    "BLOCKED_IDENTIFIERS": [],  # "kind:value", never used to match customers
    "API_KEY_CACHE_SECONDS": 5.0,  # how long a node may trust a key it checked
    "SETTINGS_CACHE_SECONDS": 5.0,  # program, tiers, rules: how stale a node may see them
    "SCHEDULER_EMBEDDED": False,
    "SCHEDULER_POLL_SECONDS": 1.0,  # how often a standby scheduler tries to take over
    "SCHEDULER_HEARTBEAT_SECONDS": 10.0,  # the active scheduler's heartbeat (/healthz)
    "HEALTH_MIN_FREE_BYTES": 64 * 1024 * 1024,  # SQLite: less free disk is "full"
    "HEALTH_FULL_SECONDS": 60.0,  # SQLite: a "disk full" this recent keeps /healthz failing
    "MAX_URL_BYTES": 4096,  # path and query; longer: 414 problem (gunicorn's limit is above)
    "MAX_HEADER_BYTES": 8000,  # one header line; longer: 431 problem (gunicorn's is above)
    "MAX_HEADERS_BYTES": 32768,  # all headers together; more: 431 problem
    "SMS_SEND_INTERVAL_SECONDS": 5.0,  # how often the scheduler drains the outbox
    "SURVEY_DISPATCH_SECONDS": 60.0,
    "CAMPAIGN_RUN_SECONDS": 60.0,  # how often active campaigns are looked at
    "SMS_BATCH_SIZE": 200,  # messages claimed by the sender at once
    "SMS_SEND_CONCURRENCY": 8,  # requests to Twilio in flight at once
    "SMS_TIMEOUT_SECONDS": 10.0,  # per request to Twilio
    "SMS_RETRY_SECONDS": 30.0,  # first retry delay; doubles per attempt, at most an hour
    "SMS_MAX_ATTEMPTS": 8,
    "SMS_DOUBT_SECONDS": 30.0,  # wait before asking Twilio whether an unanswered send landed
    "SMS_CLAIM_TIMEOUT_SECONDS": 300.0,  # a claim older than this: its sender died
    "QUIET_HOURS": "21:00-08:00",  # local hours of stores that set none ("" for none)
    "DEFAULT_TIMEZONE": "UTC",  # for messages not tied to a store
    "SMS_HELP_TEXT": "Loyalty program messages. Reply STOP to opt out, START to opt in.",
    "SMS_OPT_IN_TEXT": "You will get our messages again. Reply STOP to opt out.",
    "SURVEY_ANSWER_DAYS": 7,  # how long a survey invitation (reply or link) stays open
    "WEBHOOK_ALLOW_PRIVATE": False,  # 1: http and private addresses (never in production)
    "WEBHOOK_DELIVER_INTERVAL_SECONDS": 2.0,  # how often the scheduler sends webhooks
    "WEBHOOK_BATCH_SIZE": 200,  # deliveries claimed at once
    "WEBHOOK_CONCURRENCY": 16,  # requests in flight at once
    "WEBHOOK_TIMEOUT_SECONDS": 10.0,  # per attempt (connect, and each read)
    "WEBHOOK_CLAIM_TIMEOUT_SECONDS": 300.0,  # a claim older than this: its scheduler died
    "WEBHOOK_SECRET_OVERLAP_HOURS": 24.0,  # the old secret signs too after a rotation
    "WEBHOOK_DISABLE_AFTER_DAYS": 5,  # failing with no success this long: disabled
    "WEBHOOK_RETENTION_DAYS": 30,
    "WEBHOOK_CA_FILE": "",  # CA certificates to trust instead of the system's ("": those)
    "HELD_RETURN_DAYS": 7,  # a return whose sale has not arrived this long: expired, alert
    "RECOMMEND_WINDOW_DAYS": 365,  # purchases the recommendation model learns from
    "RECOMMEND_RECENT_DAYS": 30,  # a product bought this recently is not recommended
    "SQLITE_BUSY_TIMEOUT_S": 15.0,
    "SQLITE_CHECKPOINT_SECONDS": 0.1,  # WAL checkpoints in a thread (crm/sqlite_checkpoints.py)
    "MAX_CONTENT_LENGTH": 4 * 1024 * 1024,
    "PROXY_COUNT": 0,  # proxies in front whose X-Forwarded-For/-Proto are trusted
    # Fraud and intrusion rules (crm/alerts.py, README "Security"): each trips one past it.
    "AUTH_FAILURE_LIMIT": 20,  # failed authentications per address or key prefix ...
    "AUTH_FAILURE_WINDOW_SECONDS": 300,  # ... within this time; then 429 without a valid key
    "TAKEOVER_HOURS": 24,  # points redeemed this soon after a phone or email change: alert
    "STORE_HOP_LIMIT": 2,  # stores one member's card or phone may be used at ...
    "STORE_HOP_MINUTES": 30,  # ... within this time
    "CASHIER_RETURN_LIMIT": 5,  # returns of redeeming sales per till key per day
    "ADJUSTMENT_LIMIT": 20,  # manual point adjustments per key per day
    "SMS_BURST_LIMIT": 500,  # SMS queued per hour before an alert ...
    "SMS_HARD_CAP": 5000,  # ... and past this, further messages are held
    "VERIFICATION_TTL_SECONDS": 600,  # one-time codes for spending points from a till
    "VERIFICATION_ATTEMPTS": 5,
    "KEY_ROTATION_OVERLAP_HOURS": 24,  # how long a rotated key keeps working
    "KEY_USAGE_FLUSH_SECONDS": 60,  # a key's last use is written at most this often per node
    "LOG_LEVEL": "INFO",
    "CONSOLE_IDLE_MINUTES": 30,  # a console session ends after this long without a request
    "CONSOLE_SIGNIN_LIMIT_ACCOUNT": "5 per 15 minutes",  # failed sign-ins per email
    "CONSOLE_SIGNIN_LIMIT_ADDRESS": "20 per 15 minutes",  # failed sign-ins per address
    "FEATURE_PACKAGES": ["loyalty", "campaigns", "console"],
}


def _parse(raw: str, like: Any) -> Any:
    if isinstance(like, bool):
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if isinstance(like, int):
        return int(raw)
    if isinstance(like, float):
        return float(raw)
    if isinstance(like, list):
        return [part.strip() for part in raw.split(",") if part.strip()]
    return raw


def load(
    instance_path: Path,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] = os.environ,
) -> dict[str, Any]:
    """Return the Flask config for an app whose instance folder is ``instance_path``."""
    config = dict(DEFAULTS)
    for name, default in DEFAULTS.items():
        if environ.get(name):
            config[name] = _parse(environ[name], default)
    config.update(overrides or {})

    config["DEFAULT_REGION"] = str(config["DEFAULT_REGION"]).upper()
    config["SQLALCHEMY_DATABASE_URI"] = database_uri(config["DATABASE_URL"], instance_path)
    config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options(
        config["SQLALCHEMY_DATABASE_URI"], config["SQLITE_BUSY_TIMEOUT_S"]
    )
    if not config["SECRET_KEY"]:
        config["SECRET_KEY"] = instance_secret(instance_path)
    config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    return config


def database_uri(url: str | None, instance_path: Path) -> str:
    """The SQLAlchemy URL. A relative SQLite path is taken relative to the working
    directory, as SQLAlchemy itself does (Flask-SQLAlchemy would otherwise put it under
    the instance folder), so the documented default ``sqlite:///instance/crm.db`` means
    what it says when run from the project folder."""
    if not url:
        return f"sqlite:///{instance_path / 'crm.db'}"
    if url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgres://")
    elif url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        path = url.removeprefix("sqlite:///")
        if not path.startswith("/"):
            url = f"sqlite:///{Path(path).resolve()}"
    return url


def engine_options(uri: str, busy_timeout_s: float) -> dict[str, Any]:
    if uri.startswith("sqlite"):
        # sqlite3's own `timeout` is SQLite's busy timeout: a writer waits for the lock.
        return {"connect_args": {"timeout": busy_timeout_s}, "hide_parameters": True}
    # hide_parameters: no customer's value in an error message or log line.
    return {"pool_pre_ping": True, "pool_size": 10, "max_overflow": 20,
            "hide_parameters": True}


def instance_secret(instance_path: Path) -> str:
    """A secret key kept in the instance folder, made on first run."""
    path = instance_path / "secret_key"
    if not path.exists():
        instance_path.mkdir(parents=True, exist_ok=True)
        # Written aside, then linked into place: several workers starting at once all
        # end up reading the one key that won.
        fd, tmp = tempfile.mkstemp(dir=instance_path)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    return path.read_text().strip()
