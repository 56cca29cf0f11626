"""Rate limits per API key (per address for calls without a valid key), counted in
memory or, with RATELIMIT_STORAGE_URI=redis://..., across all nodes.

The limit is read from the app's config on each request (RATELIMIT_DEFAULT), so it can
be changed without rebuilding the limiter."""

from __future__ import annotations

from flask import Flask, current_app, g, request
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


def init_limits(app: Flask) -> None:
    limiter.init_app(app)
