"""Security headers on every answer, a CSP on HTML pages that the Swagger UI and the
survey page still work under (in a real browser), no SQL or stack trace in answers or
logs, bounded bodies."""

import json
import logging
import shutil
import subprocess

import pytest

from campaigns import surveys
from crm.errors import _what_failed
from crm.web_security import security_headers


def test_every_answer_carries_the_headers(client, factory):
    for r in (client.get("/healthz"), client.get("/api/v1/stores"),
              client.get("/api/v1/stores", headers=factory.headers("pos")),
              client.get("/api/openapi.json"), client.get("/nowhere")):
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
        assert "Strict-Transport-Security" not in r.headers  # plain http here


def test_html_pages_get_a_strict_csp(client, factory):
    for path in ("/api/docs", "/s/" + surveys.token_for(10**6)):
        r = client.get(path)
        assert r.mimetype == "text/html"
        csp = r.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp.split(";")[1]
    assert "'sha256-" in client.get("/api/docs").headers["Content-Security-Policy"]
    assert "'sha256-" not in client.get("/s/x").headers["Content-Security-Policy"]


def test_hsts_only_over_https(client, app):
    r = client.get("/healthz", base_url="https://crm.example.com")
    assert r.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    # Behind a proxy: X-Forwarded-Proto counts only when PROXY_COUNT trusts the proxy.
    r = client.get("/healthz", headers={"X-Forwarded-Proto": "https"})
    assert "Strict-Transport-Security" not in r.headers


def test_a_trusted_proxy_says_https(tmp_path, database_url):
    from crm import create_app

    proxied = create_app({"TESTING": True, "DATABASE_URL": database_url, "PROXY_COUNT": 1,
                          "INSTANCE_PATH": str(tmp_path), "LOG_LEVEL": "WARNING"})
    r = proxied.test_client().get("/healthz", headers={"X-Forwarded-Proto": "https",
                                                       "X-Forwarded-For": "203.0.113.9"})
    assert r.headers["Strict-Transport-Security"].startswith("max-age=")
    assert security_headers  # the one place the headers are set


@pytest.mark.skipif(not shutil.which("chromium"), reason="needs Debian's chromium")
@pytest.mark.parametrize("path, rendered", [
    ("/api/docs", 'class="opblock-tag'),  # Swagger UI built the operations: its script ran
    ("/s/" + "x" * 20, "<h1"),
])
def test_pages_work_under_the_csp_in_a_browser(live_server, path, rendered):
    out = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--virtual-time-budget=8000", "--dump-dom", live_server + path],
        capture_output=True, text=True, timeout=90)
    assert rendered in out.stdout, out.stderr[-2000:]


def test_no_sql_or_values_in_answers_or_logs(client, factory, caplog):
    shop = factory.headers("shop")
    factory.customer(email="clash@example.com")
    caplog.set_level(logging.INFO)
    # A clash caught by the database's unique constraint (two requests racing) answers 409
    # and logs the constraint, not the statement or the value.
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    from crm.db import db
    from crm.errors import register_error_handlers  # noqa: F401 (the handlers under test)
    from crm.models import identifier_lookup

    with pytest.raises(IntegrityError) as caught:
        db.session.execute(text(
            "INSERT INTO customer_identifiers (customer_id, kind, lookup, created_at) "
            "SELECT id, 'email', :value, created_at FROM customers"),
            {"value": identifier_lookup("email", "clash@example.com")})
    db.session.rollback()
    assert "[SQL parameters hidden" in str(caught.value)  # hide_parameters
    logged = _what_failed(caught.value)  # what the 409 handler logs: no statement, no value
    assert "clash@example.com" not in logged and "INSERT" not in logged
    r = client.post("/api/v1/customers", headers=shop,
                    data=b'{"email": "x@example.com", "first_name": ' + b"[" * 5000,
                    content_type="application/json")
    assert r.status_code == 400
    for text_ in [r.text, *(rec.getMessage() for rec in caplog.records)]:
        assert "Traceback" not in text_ and "SELECT" not in text_ and "INSERT" not in text_


def test_a_500_answers_and_logs_no_trace(tmp_path, database_url, caplog):
    from crm import create_app
    from crm.observability import JsonFormatter

    app = create_app({"DATABASE_URL": database_url, "INSTANCE_PATH": str(tmp_path),
                      "LOG_LEVEL": "WARNING"})

    @app.get("/boom-for-test")
    def boom():
        raise ValueError("SELECT secret FROM customers WHERE email = 'ada@example.com'")

    caplog.set_level(logging.ERROR)
    r = app.test_client().get("/boom-for-test")
    assert r.status_code == 500 and "SELECT" not in r.text and "ada@" not in r.text
    lines = [JsonFormatter().format(rec) for rec in caplog.records]
    assert lines and all("ada@" not in line and "SELECT" not in line for line in lines)
    assert any("ValueError at" in json.loads(line).get("exc", json.loads(line)["msg"])
               for line in lines)


def test_request_bodies_are_bounded(client, factory, app):
    big = b'{"name": "' + b"x" * (app.config["MAX_CONTENT_LENGTH"] + 1) + b'"}'
    r = client.post("/api/v1/customers", headers=factory.headers("shop"), data=big,
                    content_type="application/json")
    assert r.status_code == 413 and r.mimetype == "application/problem+json"
