import pytest


@pytest.fixture
def low_limit(app):
    old = app.config["RATELIMIT_DEFAULT"]
    app.config["RATELIMIT_DEFAULT"] = "3 per minute"
    yield
    app.config["RATELIMIT_DEFAULT"] = old


def test_limit_is_per_key_and_answers_429_problem_with_retry_after(client, factory, low_limit):
    one, two = factory.headers("shop"), factory.headers("shop")
    assert [client.get("/api/v1/stores", headers=one).status_code for _ in range(3)] == [200] * 3
    r = client.get("/api/v1/stores", headers=one)
    assert r.status_code == 429 and r.mimetype == "application/problem+json"
    assert int(r.headers["Retry-After"]) > 0
    assert r.json["type"].endswith("rate-limited")
    assert client.get("/api/v1/stores", headers=two).status_code == 200
    assert client.get("/healthz").status_code == 200  # never limited


def test_calls_without_a_key_are_limited_by_address(client, low_limit):
    codes = [client.get("/api/v1/stores").status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]
