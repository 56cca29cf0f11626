import json
import logging
import re

from crm import create_app


def test_healthz_checks_the_database(client):
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json["checks"]["database"] == {"status": "ok"}


def test_healthz_is_503_when_the_database_is_unreachable(tmp_path):
    app = create_app({"DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none",
                      "INSTANCE_PATH": str(tmp_path), "LOG_LEVEL": "CRITICAL"})
    r = app.test_client().get("/healthz")
    assert r.status_code == 503 and r.mimetype == "application/problem+json"
    assert r.json["health"] == "failing"
    assert r.json["checks"]["database"] == {"status": "unreachable"}
    assert r.headers["Retry-After"]
    ready = app.test_client().get("/healthz?ready")
    assert ready.status_code == 503 and ready.json["checks"] == {
        "database": {"status": "unreachable"}}


def test_request_id_is_echoed_or_made(client):
    assert client.get("/healthz", headers={"X-Request-Id": "till-7.abc"}).headers[
        "X-Request-Id"] == "till-7.abc"
    made = client.get("/healthz", headers={"X-Request-Id": "bad id!"}).headers["X-Request-Id"]
    assert len(made) == 32 and "!" not in made


def test_one_structured_log_line_per_request(client, factory, caplog):
    headers = factory.headers("shop")
    with caplog.at_level(logging.INFO, logger="crm.request"):
        client.get("/api/v1/stores", headers={**headers, "X-Request-Id": "r-1"})
    records = [r for r in caplog.records if r.name == "crm.request"]
    assert len(records) == 1
    fields = records[0].fields
    assert fields["request_id"] == "r-1" and fields["status"] == 200
    assert fields["endpoint"] == "stores.Stores" and fields["api_key_id"] is not None
    assert fields["duration_ms"] >= 0
    from crm.observability import JsonFormatter
    line = json.loads(JsonFormatter().format(records[0]))
    assert line["path"] == "/api/v1/stores" and line["level"] == "info"


def _stores_count(client) -> float:
    text = client.get("/metrics").get_data(as_text=True)
    found = re.search(r'crm_http_request_duration_seconds_count\{endpoint="stores.Stores",'
                      r'method="GET",status="200"\} ([\d.]+)', text)
    assert 'crm_http_request_duration_seconds_bucket{endpoint="stores.Stores"' in text
    return float(found.group(1))


def test_metrics_count_requests_and_latency_by_endpoint(client, factory):
    headers = factory.headers("shop")
    client.get("/api/v1/stores", headers=headers)
    before = _stores_count(client)
    for _ in range(3):
        client.get("/api/v1/stores", headers=headers)
    assert _stores_count(client) == before + 3
