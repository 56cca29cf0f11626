"""Rate limits per API key (per address for calls without a valid key), counted in
memory or, with RATELIMIT_STORAGE_URI=redis://..., across all nodes.

The limit is read from the app's config on each request (RATELIMIT_DEFAULT), so it can
be changed without rebuilding the limiter.

When the shared storage (Redis) cannot be reached, flask-limiter's in-memory fallback
takes over (RATELIMIT_IN_MEMORY_FALLBACK_ENABLED): every process then counts its own
limits, the service keeps answering, and flask-limiter checks the storage again with a
back-off (1, 2, 4 ... 32 seconds) and goes back to it once it answers. Each switch is
logged once (``crm.limits``, no flood) and counted in ``crm_ratelimit_storage_switches_total``
(``to="memory"|"storage"``); ``crm_ratelimit_storage_fallback`` is 1 while a process
counts in memory. Our own counters (failed authentications, fraud rules, the SMS budget)
go through ``counters()``, which falls back the same way."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, current_app, g, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from prometheus_client import Counter, Gauge

from crm.observability import register_metrics

UNLIMITED_ENDPOINTS = {"health.healthz", "prometheus_metrics", "docs_assets.docs_asset",
                       "api-docs.openapi_json", "api-docs.openapi_swagger_ui"}
log = logging.getLogger("crm.limits")

SWITCHES = Counter("crm_ratelimit_storage_switches", "Rate limit storage switches",
                   ["to"])
FALLBACK = Gauge("crm_ratelimit_storage_fallback",
                 "1 while this process counts rate limits in memory (storage unreachable)",
                 multiprocess_mode="max")


def _caller() -> str:
    key = g.get("api_key")
    return f"key:{key.id}" if key is not None else f"addr:{get_remote_address()}"


def _default_limit() -> str:
    return current_app.config["RATELIMIT_DEFAULT"]


def _exempt() -> bool:
    return request.endpoint in UNLIMITED_ENDPOINTS


limiter = Limiter(
    key_func=_caller,
    default_limits=[_default_limit],
    default_limits_exempt_when=_exempt,
)


class _Switches(logging.Filter):
    """flask-limiter logs each switch to and from its fallback once: count it, and log it
    as ours (structured, on ``crm.limits``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "falling back to in-memory" in message:
            _switched("memory")
            return False
        if "storage recovered" in message:
            _switched("storage")
            return False
        return record.levelno >= logging.getLogger().getEffectiveLevel()


def _switched(to: str) -> None:
    SWITCHES.labels(to=to).inc()
    FALLBACK.set(1 if to == "memory" else 0)
    if to == "memory":
        log.warning("rate limit storage unreachable: counting limits in this process's "
                    "memory until it answers again")
    else:
        log.info("rate limit storage answers again: limits are shared again")


def in_fallback() -> bool:
    """Whether this process counts in memory because the storage did not answer."""
    return bool(getattr(limiter, "_storage_dead", False))


def _fall_back() -> None:
    # flask-limiter keeps the state of its fallback in this attribute and checks the
    # storage again from it on the next request (with its back-off).
    if limiter._in_memory_fallback_enabled and not limiter._storage_dead:
        limiter._storage_dead = True
        _switched("memory")


def counters(method: str, *args: Any, **kwargs: Any) -> Any:
    """Call ``method`` (hit, test, clear, get_window_stats) of the rate limiting strategy:
    on the shared storage, or this process's memory while the storage is unreachable."""
    try:
        return getattr(limiter.limiter, method)(*args, **kwargs)
    except Exception as error:  # the storage's own errors: redis, sockets, timeouts
        if not limiter._in_memory_fallback_enabled or in_fallback():
            raise
        log.debug("rate limit storage failed: %s", type(error).__name__)
        _fall_back()
        return getattr(limiter.limiter, method)(*args, **kwargs)


def storage_answers() -> bool:
    """Whether the configured storage answers now (one ping)."""
    try:
        return bool(limiter.storage.check())
    except Exception:  # any failure of the storage is "does not answer"
        return False


def _retry_after_only_when_refused(response: Response) -> Response:
    # flask-limiter sends Retry-After on every answer; it means "wait" only on a refusal.
    if response.status_code not in (429, 503, 507):
        response.headers.pop("Retry-After", None)
    elif "retry_after" in g:  # the app's own (a database failure), not the limit's window
        response.headers["Retry-After"] = g.retry_after
    return response


def init_limits(app: Flask) -> None:
    app.config.setdefault("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", True)
    if str(app.config.get("RATELIMIT_STORAGE_URI", "")).startswith(("redis", "rediss")):
        # A dead or unreachable Redis must fail fast, not hold every request.
        options: dict[str, Any] = {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}
        options.update(app.config.get("RATELIMIT_STORAGE_OPTIONS") or {})
        app.config["RATELIMIT_STORAGE_OPTIONS"] = options
    switches = logging.getLogger("flask-limiter")
    switches.setLevel(logging.INFO)  # its "recovered" is INFO: the filter must see it
    if not any(isinstance(f, _Switches) for f in switches.filters):
        switches.addFilter(_Switches())
    register_metrics(app, SWITCHES, FALLBACK)
    app.after_request(_retry_after_only_when_refused)  # runs after the limiter's (LIFO)
    limiter.init_app(app)
