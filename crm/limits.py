"""Rate limits per API key (per address for calls without a valid key), counted in
memory or, with RATELIMIT_STORAGE_URI=redis://..., across all nodes.

The limit is read from the app's config on each request (RATELIMIT_DEFAULT), so it can
be changed without rebuilding the limiter."""

from __future__ import annotations

from flask import Flask, Response, current_app, g, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

UNLIMITED_ENDPOINTS = {"health.healthz", "prometheus_metrics", "docs_assets.docs_asset",
                       "api-docs.openapi_json", "api-docs.openapi_swagger_ui"}


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


def _retry_after_only_when_refused(response: Response) -> Response:
    # flask-limiter sends Retry-After on every answer; it means "wait" only on a refusal.
    if response.status_code not in (429, 503):
        response.headers.pop("Retry-After", None)
    return response


def init_limits(app: Flask) -> None:
    app.after_request(_retry_after_only_when_refused)  # runs after the limiter's (LIFO)
    limiter.init_app(app)
