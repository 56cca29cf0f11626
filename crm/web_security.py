"""Security headers on every answer, and the proxy in front of the app.

Every answer says ``nosniff``, refuses to be framed and sends no referrer; HTML pages
get a Content Security Policy that allows only this origin's scripts and styles (the
survey page's own inline styles, and the one inline script of the Swagger UI page, by
its hash). HSTS is sent when the request came over https: directly, or through a proxy
trusted with ``PROXY_COUNT`` (X-Forwarded-For / -Proto; gunicorn also trusts
``FORWARDED_ALLOW_IPS``)."""

from __future__ import annotations

import base64
import hashlib
import re

from flask import Flask, Response, request
from werkzeug.middleware.proxy_fix import ProxyFix

_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.S)
# Pages of our own whose inline scripts are allowed by their hash; no client text is in them.
HASHED_SCRIPT_ENDPOINTS = {"api-docs.openapi_swagger_ui"}
CSP = ("default-src 'none'; script-src 'self'{hashes}; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; connect-src 'self'; font-src 'self'; form-action 'self'; "
       "base-uri 'none'; frame-ancestors 'none'")
HSTS = "max-age=31536000; includeSubDomains"


def _script_hashes(response: Response) -> str:
    if request.endpoint not in HASHED_SCRIPT_ENDPOINTS or response.direct_passthrough:
        return ""
    return "".join(
        f" 'sha256-{base64.b64encode(hashlib.sha256(body).digest()).decode()}'"
        for body in _INLINE_SCRIPT.findall(response.get_data()))


def security_headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("Cross-Origin-Resource-Policy", "same-origin")
    if response.mimetype == "text/html":
        headers.setdefault("Content-Security-Policy", CSP.format(hashes=_script_hashes(response)))
    else:  # JSON and files: nothing in them may run or be framed
        headers.setdefault("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
    if request.is_secure:
        headers.setdefault("Strict-Transport-Security", HSTS)
    return response


def init_web_security(app: Flask) -> None:
    proxies = app.config["PROXY_COUNT"]
    if proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies,  # type: ignore[method-assign]
                                x_host=proxies)
    app.after_request(security_headers)
