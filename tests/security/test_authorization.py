"""Every route of the OpenAPI document x every kind of key, against objects of this
store and another, answered as tests/security/authorization_table.py says."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from crm import keys
from crm.db import db, utcnow
from crm.models import ApiKey
from tests.security.authorization_table import ACCESS, BODIES

KINDS = ("none", "revoked", "expired", "marketing", "shop", "pos_other", "pos", "admin")
METHODS = ("get", "post", "put", "patch", "delete")


def _routes(client):
    spec = client.get("/api/openapi.json").get_json()
    return [f"{method.upper()} {path.removeprefix('/api/v1')}"
            for path, ops in spec["paths"].items() for method in ops if method in METHODS]


def test_every_route_is_in_the_table(client):
    routes = _routes(client)
    missing = sorted(set(routes) - set(ACCESS))
    assert not missing, f"add these routes to tests/security/authorization_table.py: {missing}"
    stale = sorted(set(ACCESS) - set(routes))
    assert not stale, f"rows for routes that no longer exist: {stale}"


def _allowed(row: str, kind: str) -> bool:
    names = set(row.split())
    return {"pos": bool(names & {"till", "tills"}), "pos_other": "tills" in names}.get(
        kind, kind in names)


@pytest.fixture
def world(client, factory, app, monkeypatch):
    """Two stores with a till each, the other kinds of key, and one object of each kind
    (the purchase at this store)."""
    monkeypatch.setitem(app.config, "AUTH_FAILURE_LIMIT", 100_000)
    here = factory.store("HERE1", currency="EUR")
    there = factory.store("THERE", currency="EUR")
    headers = {"none": {}}
    for kind, scopes, store in (("pos", ["pos"], here.code), ("pos_other", ["pos"], there.code),
                                ("shop", ["shop"], None), ("marketing", ["marketing"], None),
                                ("admin", ["admin"], None)):
        headers[kind] = {"Authorization": f"Bearer {factory.key(*scopes, store=store)}"}
    db.session.rollback()
    made = {name: keys.create_key(name, ["admin"]) for name in ("revoked", "expired")}
    spare, _ = keys.create_key("spare", ["marketing"])
    db.session.commit()
    for name, (_, key) in made.items():
        headers[name] = {"Authorization": f"Bearer {key}"}
    keys.revoke_key(made["revoked"][0].id)
    db.session.execute(update(ApiKey).where(ApiKey.id == made["expired"][0].id)
                       .values(expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    keys.forget_callers()
    customer = factory.customer(phone="+12125550123", consent={"sms": True})
    sale = client.post("/api/v1/purchases", headers=headers["pos"], json={
        "receipt_id": "AUTHZ1", "occurred_at": datetime.now(UTC).isoformat(),
        "currency": "EUR", "total": "10.00", "customer": {"id": customer.id},
        "lines": [{"sku": "A", "quantity": 1, "unit_price": "10.00"}]})
    assert sale.status_code == 201, sale.get_json()
    params = {"code": here.code, "customer_id": customer.id, "key_id": spare.id,
              "purchase_id": sale.get_json()["id"]}
    return headers, params


def test_every_route_answers_every_kind_of_key_as_the_table_says(client, world):
    headers, params = world
    wrong = []
    for route in _routes(client):
        method, path = route.split(" ", 1)
        url = "/api/v1" + path.format_map(_Ids(params))
        for kind in KINDS:
            body = _body(route, params) if method in ("POST", "PUT", "PATCH") else None
            r = client.open(url, method=method, headers=headers[kind], json=body)
            if kind in ("none", "revoked", "expired"):
                expected = "401"
                ok = r.status_code == 401
            elif _allowed(ACCESS[route], kind):
                expected = "allowed"
                ok = r.status_code not in (401, 403, 429) and r.status_code < 500
            else:
                expected = "403"
                ok = r.status_code == 403
            if not ok:
                wrong.append(f"{route} as {kind}: {r.status_code}, expected {expected}")
            assert r.status_code < 500, f"{route} as {kind}: {r.status_code} {r.get_data()}"
    print(f"\nauthorization table: {len(_routes(client))} routes x {len(KINDS)} kinds of key")
    assert not wrong, "\n".join(wrong)


def _body(route, params):
    def fill(value):
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
            return params[value[1:-1]]
        return value
    return fill(BODIES.get(route, {}))


class _Ids(dict):
    """Path parameters: the objects made by the fixture, else an id that exists nowhere."""

    def __init__(self, known):
        super().__init__(known)

    def __missing__(self, name):
        return 999_999
