"""Bad input of every kind is a 4xx problem+json and writes nothing."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm import create_app


def _problem(r, status):
    assert r.status_code == status, (r.status_code, r.get_data(as_text=True))
    assert r.mimetype == "application/problem+json"
    body = r.json
    assert body["status"] == status and body["title"] and body["type"]
    return body


def test_malformed_json_is_400(client, factory):
    shop = factory.headers("shop")
    for raw in (b"{", b"{'email': 1}", b"\xff\xfe", b"[1,"):
        r = client.post("/api/v1/customers", headers=shop, data=raw,
                        content_type="application/json")
        _problem(r, 400)


@pytest.mark.parametrize("body", [
    [], "text", 5, None, {"email": 5}, {"first_name": ["a"]}, {"consent": "yes"},
    {"consent": {"sms": "maybe"}}, {"birthday": "10/12/1990"}, {"unknown": 1},
    {"email": "a@example.com", "id": 7},
])
def test_wrong_types_and_unknown_fields_are_422(client, factory, body):
    shop = factory.headers("shop")
    _problem(client.post("/api/v1/customers", headers=shop, json=body), 422)
    assert client.get("/api/v1/customers", headers=shop).json["items"] == []


def test_integers_too_long_to_parse_and_nul_characters_are_400(client, factory):
    shop = factory.headers("shop")
    r = client.post("/api/v1/customers", headers=shop, data=b"1" * 5000,
                    content_type="application/json")
    _problem(r, 400)
    r = client.post("/api/v1/customers", headers=shop, json={"first_name": "A\u0000"})
    _problem(r, 400)
    _problem(client.get("/api/v1/customers?q=a%00b", headers=shop), 400)
    assert client.get("/api/v1/customers", headers=shop).json["items"] == []


def test_validation_problem_lists_errors_by_field(client, factory):
    r = client.post("/api/v1/customers", headers=factory.headers("shop"),
                    json={"email": 5, "birthday": "x", "nope": 1})
    body = _problem(r, 422)
    assert set(body["errors"]) == {"email", "birthday", "nope"}


def test_oversized_body_is_413(client, factory, app):
    r = client.post("/api/v1/customers", headers=factory.headers("shop"),
                    data=b'{"first_name": "' + b"x" * app.config["MAX_CONTENT_LENGTH"] + b'"}',
                    content_type="application/json")
    _problem(r, 413)


@pytest.mark.parametrize("path", ["/api/v1/customers/abc", "/api/v1/customers/0",
                                  "/api/v1/customers/-1", "/api/v1/customers/1.5",
                                  "/api/v1/customers/99999999999999999999999",
                                  "/api/v1/customers/9223372036854775807",
                                  "/api/v1/nothing-here"])
def test_bad_ids_and_paths_are_404(client, factory, path):
    _problem(client.get(path, headers=factory.headers("admin")), 404)


def test_wrong_method_is_405_with_allow(client, factory):
    r = client.put("/api/v1/customers", headers=factory.headers("admin"), json={})
    _problem(r, 405)
    assert "GET" in r.headers["Allow"] and "POST" in r.headers["Allow"]


def test_unexpected_exception_is_a_500_problem_without_internals(tmp_path):
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path}/x.db",
                      "INSTANCE_PATH": str(tmp_path), "LOG_LEVEL": "CRITICAL"})

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals")

    r = app.test_client().get("/boom")
    body = _problem(r, 500)
    assert "secret" not in r.get_data(as_text=True)
    assert body["request_id"] == r.headers["X-Request-Id"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=8,
)
customer_fields = st.sampled_from(["email", "phone", "card_number", "first_name",
                                   "last_name", "birthday", "city", "consent", "x"])


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.dictionaries(customer_fields, json_values, max_size=5))
def test_no_input_makes_a_500(client, factory, body):
    shop = factory.headers("shop")
    r = client.post("/api/v1/customers", headers=shop, json=body)
    assert r.status_code in (201, 400, 409, 422), (body, r.status_code, r.get_data(as_text=True))
    if r.status_code != 201:
        assert r.mimetype == "application/problem+json"
    q = client.get("/api/v1/customers", headers=shop, query_string={
        k: str(v) for k, v in body.items() if k in ("email", "phone")})
    assert q.status_code in (200, 400, 422)


def test_text_no_database_can_store_is_a_400(client, factory):
    shop = factory.headers("shop")
    for raw in (b'{"first_name": "A\\ud800", "email": "a@example.com"}',
                b'{"first_name": "\\udc00x", "email": "a@example.com"}'):
        r = client.post("/api/v1/customers", headers=shop, data=raw,
                        content_type="application/json")
        assert r.status_code == 400, r.get_json()
    # a pair (an emoji written as escapes) is fine
    r = client.post("/api/v1/customers", headers=shop, content_type="application/json",
                    data=b'{"first_name": "A\\ud83d\\ude00", "email": "b@example.com"}')
    assert r.status_code == 201, r.get_json()
    assert r.get_json()["first_name"] == "A\U0001F600"
    r = client.post("/webhooks/twilio/inbound", data="From=%2B1212%00&Body=STOP",
                    content_type="application/x-www-form-urlencoded")
    assert r.status_code == 400


def test_json_nested_too_deeply_is_a_400(client, factory):
    r = client.post("/api/v1/customers", headers=factory.headers("shop"),
                    data=b"[" * 5000 + b"]" * 5000, content_type="application/json")
    assert r.status_code == 400, r.get_data(as_text=True)[:200]


def test_amounts_take_ascii_digits_only(client, factory):
    from crm.money import InvalidAmount, to_minor

    with pytest.raises(InvalidAmount):
        to_minor("\u0661\u0660\u0660.\u0660\u0660", "EUR")
