"""The OpenAPI document tells the truth about answers (issue 18, point 12): Schemathesis
generates requests for every operation of /api/openapi.json from the document itself,
sends them to the app with an admin key, and checks each answer against it: a
documented status, content type, headers and body schema, and never a 5xx.

A few examples per operation in CI (seconds); a longer run, from the README:
``SCHEMATHESIS_EXAMPLES=200 .venv/bin/python -m pytest tests/crm/test_openapi_conformance.py``.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from crm import keys
from crm.db import db

EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "3"))
SHARDS = 2  # the operations in two tests, which pytest-xdist runs side by side
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]


def _seed(client, factory, till) -> dict[str, object]:
    """One of each object an operation names in its path, made through the API: the
    generated examples then also reach the answers about objects that exist."""
    admin, marketing = factory.headers("admin"), factory.headers("marketing")

    def made(r, status=201):
        assert r.status_code == status, r.get_json()
        return r.get_json()

    def post(path, body, headers=admin, status=201):
        return made(client.post(f"/api/v1{path}", headers=headers, json=body), status)

    ada = factory.customer(first_name="Ada", phone="+14155552671", consent={"sms": True})
    twin = factory.customer(first_name="Ada")
    post(f"/customers/{ada.id}/merge", {"source_customer_id": twin.id}, status=200)
    sale = made(till.buy({"id": ada.id}, "40.00"))
    till.give_back(sale["id"], amount="10.00")
    offer = post("/offers", {"name": "Ten", "kind": "percent", "value": "10"}, marketing)
    segment = post("/segments", {"name": "All", "rule": {
        "field": "consent_sms", "op": "eq", "value": True}}, marketing)
    post("/products/sync", {"products": [{"sku": "SKU-1", "name": "Tea", "category": "food",
                                          "price": "4.00", "currency": "EUR",
                                          "active": True}]}, status=200)
    spare_key = post("/api-keys", {"name": "spare", "scopes": ["shop"]})
    return {
        "code": till.store, "customer_id": ada.id, "purchase_id": sale["id"], "sku": "SKU-1",
        "key_id": spare_key["id"], "offer_id": offer["id"], "segment_id": segment["id"],
        "tier_id": post("/loyalty/tiers", {"name": "Gold", "threshold_points": 100})["id"],
        "rule_id": post("/loyalty/earning-rules", {"name": "Tea", "kind": "multiplier",
                                                   "value": "2", "skus": ["SKU-1"]},
                        marketing)["id"],
        "reward_id": post("/rewards", {"name": "Tea", "points_cost": 10,
                                       "offer_id": offer["id"]}, marketing)["id"],
        "survey_id": post("/surveys", {"name": "NPS", "kind": "nps", "question": "Q?",
                                       "delay_hours": 1, "throttle_days": 0}, marketing)["id"],
        "campaign_id": post("/campaigns", {
            "name": "Hi", "segment_id": segment["id"], "template": "Hi {first_name}",
            "holdout_percent": 0, "schedule": {"cron": "0 9 * * 1"}}, marketing)["id"],
        "merged_customer_id": twin.id,
    }


@pytest.fixture
def admin_key(app):
    with app.app_context():
        _, key = keys.create_key("conformance", ["admin"])
        db.session.commit()
    return key


def _check(client, operation, headers, known=None):
    """Run the generated examples of one operation (with the path's ids replaced by
    ``known`` ones, when given); the first mismatch, or None."""
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def examples(case):
        for name in case.path_parameters or {}:
            if known and name in known:
                case.path_parameters[name] = known[name]
        # the tests' client: each request in its own context and session, as in production
        response = case.call(session=client, headers=headers)
        case.validate_response(response, checks=CHECKS)

    try:
        examples()
    except (Exception, BaseExceptionGroup) as e:  # a Schemathesis failure names what differs
        return f"{operation.label}{' (known ids)' if known else ''}: {e}"
    return None


@pytest.mark.slow
@pytest.mark.parametrize("shard", range(SHARDS))
def test_every_answer_matches_the_document(app, admin_key, client, factory, till, shard):
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    headers = {"Authorization": f"Bearer {admin_key}"}
    operations = sorted((result.ok() for result in schema.get_all_operations()),
                        key=lambda op: op.label)
    assert len(operations) > 90
    operations = operations[shard::SHARDS]
    known = _seed(client, factory, till)
    merged = {**known, "customer_id": known["merged_customer_id"]}
    # deletions last: what they remove, the others still find
    operations.sort(key=lambda op: op.method.upper() == "DELETE")
    failures = [f for op in operations for f in (
        _check(client, op, headers),
        _check(client, op, headers, known) if "{" in op.path else None,
        _check(client, op, headers, merged) if op.label == "GET /api/v1/customers/{customer_id}"
        else None) if f]
    assert not failures, "\n\n".join(failures)


def test_a_patch_without_a_body_is_refused_and_changes_nothing(client, factory):
    ada = factory.customer(first_name="Ada")
    url, shop = f"/api/v1/customers/{ada.id}", factory.headers("shop")
    for request in ({}, {"data": "first_name=Eve"}, {"data": "first_name=Eve",
                                                     "content_type": "text/plain"}):
        r = client.patch(url, headers=shop, **request)
        assert r.status_code == 422, r.get_data(as_text=True)
        assert r.content_type == "application/problem+json"
        assert "JSON object" in str(r.get_json()["errors"])
    r = client.patch(url, headers=shop, json={})  # an empty patch: nothing to change
    assert r.status_code == 200 and r.get_json()["first_name"] == "Ada"
    assert client.get(url, headers=shop).get_json()["first_name"] == "Ada"
