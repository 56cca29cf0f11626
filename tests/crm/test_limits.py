import subprocess
import sys
import uuid

import pytest


@pytest.fixture
def low_limit(app):
    old = app.config["RATELIMIT_DEFAULT"]
    app.config["RATELIMIT_DEFAULT"] = "3 per minute"
    yield
    app.config["RATELIMIT_DEFAULT"] = old


def test_limit_is_per_key_and_answers_429_problem_with_retry_after(client, factory, low_limit):
    one, two = factory.headers("shop"), factory.headers("shop")
    ok = client.get("/api/v1/stores", headers=two)
    assert ok.headers["X-RateLimit-Remaining"] == "2" and "Retry-After" not in ok.headers
    assert [client.get("/api/v1/stores", headers=one).status_code for _ in range(3)] == [200] * 3
    r = client.get("/api/v1/stores", headers=one)
    assert r.status_code == 429 and r.mimetype == "application/problem+json"
    assert int(r.headers["Retry-After"]) > 0
    assert r.json["type"].endswith("rate-limited")
    assert [client.get("/api/v1/stores", headers=two).status_code for _ in range(3)] == \
        [200, 200, 429]
    assert client.get("/healthz").status_code == 200  # never limited


def test_calls_without_a_key_are_limited_by_address(client, low_limit):
    codes = [client.get("/api/v1/stores").status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]


NODE = """
import sys
from crm import create_app
app = create_app({"DATABASE_URL": sys.argv[1], "INSTANCE_PATH": sys.argv[2],
                  "RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379/15",
                  "RATELIMIT_KEY_PREFIX": sys.argv[3], "RATELIMIT_DEFAULT": "5 per minute",
                  "LOG_LEVEL": "CRITICAL"})
client = app.test_client()
print(" ".join(str(client.get("/api/v1/stores", headers={"Authorization": "Bearer " + sys.argv[4]})
               .status_code) for _ in range(3)))
"""


def test_redis_storage_shares_limits_across_nodes(database_url, factory, tmp_path):
    """Two separate processes (two nodes) count against one limit kept in Redis."""
    key = factory.key("shop")
    prefix = f"test-{uuid.uuid4().hex}"

    def node() -> str:
        done = subprocess.run([sys.executable, "-c", NODE, database_url, str(tmp_path), prefix,
                               key], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert node() == "200 200 200"
    assert node() == "200 200 429"
