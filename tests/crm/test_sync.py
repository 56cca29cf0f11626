from sqlalchemy import func, select

from crm.db import db
from crm.models import ConsentEvent, Customer, CustomerIdentifier


def _sync(client, headers, *members, status=200):
    r = client.post("/api/v1/customers/sync", headers=headers, json={"customers": list(members)})
    assert r.status_code == status, r.get_json()
    return r.get_json()["results"] if status == 200 else r.get_json()


def test_each_result_kind(client, factory):
    shop = factory.headers("shop")
    in_store = factory.customer(phone="+14155552671", first_name="Ada", last_name=None,
                                email=None)
    other = factory.customer(email="grace@example.com")
    results = _sync(
        client, shop,
        {"external_id": "S1", "email": "New@Example.com", "first_name": "Neo",
         "updated_at": "2026-11-01T10:00:00Z", "consent": {"email": True}},
        {"external_id": "S2", "phone": "(415) 555-2671", "last_name": "Lovelace",
         "updated_at": "2026-11-01T10:00:00Z"},
        {"external_id": "S3", "phone": "+14155552671", "email": "grace@example.com",
         "updated_at": "2026-11-01T10:00:00Z"},
        {"external_id": "S4", "email": "not-an-email", "updated_at": "2026-11-01T10:00:00Z"},
        {"external_id": "S5"},
        "not even an object",
    )
    assert [r["result"] for r in results] == ["created", "matched", "conflict", "invalid",
                                               "invalid", "invalid"]
    assert results[1]["customer_id"] == in_store.id
    assert results[2]["detail"]["customer_ids"] == sorted([in_store.id, other.id])
    assert "email" in results[3]["detail"] and "updated_at" in results[4]["detail"]
    profile = client.get(f"/api/v1/customers/{in_store.id}", headers=shop).get_json()
    assert profile["last_name"] == "Lovelace" and profile["first_name"] == "Ada"
    assert {"kind": "shop", "value": "S2"} in [
        {k: i[k] for k in ("kind", "value")} for i in profile["identifiers"]]
    created = client.get(f"/api/v1/customers/{results[0]['customer_id']}",
                         headers=shop).get_json()
    assert created["email"] == "new@example.com" and created["consent"]["email"] is True

    again = _sync(client, shop,
                  {"external_id": "S1", "email": "new@example.com", "first_name": "Neo",
                   "updated_at": "2026-11-02T10:00:00Z", "consent": {"email": True}},
                  {"external_id": "S1", "first_name": "Newer", "city": "Lyon",
                   "updated_at": "2026-11-03T10:00:00Z"},
                  {"external_id": "S1", "first_name": "Stale",
                   "updated_at": "2026-10-01T10:00:00Z"})
    assert [r["result"] for r in again] == ["unchanged", "updated", "unchanged"]
    created = client.get(f"/api/v1/customers/{results[0]['customer_id']}",
                         headers=shop).get_json()
    assert created["first_name"] == "Newer" and created["city"] == "Lyon"


def test_replaying_a_batch_changes_nothing(client, factory):
    shop = factory.headers("shop")
    batch = [{"external_id": f"R{n}", "email": f"r{n}@example.com", "first_name": f"R{n}",
              "updated_at": "2026-11-01T10:00:00Z", "consent": {"sms": True}}
             for n in range(50)]
    assert {r["result"] for r in _sync(client, shop, *batch)} == {"created"}
    counts = [db.session.scalar(select(func.count()).select_from(t))
              for t in (Customer, CustomerIdentifier, ConsentEvent)]
    stamps = db.session.scalars(select(Customer.updated_at).order_by(Customer.id)).all()
    assert {r["result"] for r in _sync(client, shop, *batch)} == {"unchanged"}
    assert counts == [db.session.scalar(select(func.count()).select_from(t))
                      for t in (Customer, CustomerIdentifier, ConsentEvent)]
    db.session.expire_all()
    assert stamps == db.session.scalars(select(Customer.updated_at).order_by(Customer.id)).all()


def test_members_within_one_batch_see_each_other(client, factory):
    shop = factory.headers("shop")
    results = _sync(client, shop,
                    {"external_id": "A", "email": "alice@example.com",
                     "updated_at": "2026-11-01T10:00:00Z"},
                    {"external_id": "A", "phone": "+14155552671",
                     "updated_at": "2026-11-02T10:00:00Z"},
                    {"external_id": "B", "email": "alice@example.com",
                     "updated_at": "2026-11-01T10:00:00Z"})
    assert [r["result"] for r in results] == ["created", "updated", "conflict"]
    made = client.get(f"/api/v1/customers/{results[0]['customer_id']}", headers=shop).get_json()
    assert made["email"] == "alice@example.com" and made["phone"] == "+14155552671"


def test_placeholder_values_never_match_two_people(client, factory, app):
    shop = factory.headers("shop")
    factory.store("NYC9", phone="+12125550199")
    app.config["BLOCKED_IDENTIFIERS"] = ["email:shop@ourstore.com"]
    try:
        results = _sync(
            client, shop,
            {"external_id": "P1", "email": "test@test.com", "phone": "+12125550199",
             "first_name": "One", "updated_at": "2026-11-01T10:00:00Z"},
            {"external_id": "P2", "email": "test@test.com", "phone": "+12125550199",
             "first_name": "Two", "updated_at": "2026-11-01T10:00:00Z"},
            {"external_id": "P3", "email": "shop@ourstore.com",
             "updated_at": "2026-11-01T10:00:00Z"})
        assert [r["result"] for r in results] == ["created", "created", "created"]
        assert len({r["customer_id"] for r in results}) == 3
        assert any("placeholder" in n for n in results[0]["detail"]["notes"])
        r = client.post("/api/v1/customers", headers=shop, json={"email": "noemail@x.com"})
        assert r.status_code == 422 and "email" in r.get_json()["errors"]
        r = client.post("/api/v1/customers", headers=shop, json={"phone": "+12125550199"})
        assert r.status_code == 422
    finally:
        app.config["BLOCKED_IDENTIFIERS"] = []


def test_sync_input_limits(client, factory):
    shop = factory.headers("shop")
    _sync(client, shop, status=422)
    too_many = [{"external_id": str(n), "updated_at": "2026-11-01T10:00:00Z"}
                for n in range(1001)]
    r = client.post("/api/v1/customers/sync", headers=shop, json={"customers": too_many})
    assert r.status_code == 422
    r = client.post("/api/v1/customers/sync", headers=factory.headers("pos"),
                    json={"customers": too_many[:1]})
    assert r.status_code == 403


def test_consent_history_is_kept(client, factory):
    c = factory.customer()
    pos = factory.headers("pos")
    url = f"/api/v1/customers/{c.id}/consent"
    assert client.put(url, headers=pos, json={"sms": True}).status_code == 200
    r = client.put(url, headers=factory.headers("shop"),
                   json={"sms": False, "email": True, "source": "newsletter form"})
    body = r.get_json()
    assert body["sms"] is False and body["email"] is True
    assert [(e["channel"], e["granted"], e["source"]) for e in body["history"]][:3] == [
        ("email", True, "newsletter form"), ("sms", False, "newsletter form"),
        ("sms", True, body["history"][2]["source"])]
    assert body["history"][2]["source"].startswith("pos:")
    assert body["history"][2]["store_id"] is not None
    assert client.put(url, headers=pos, json={}).status_code == 422
    assert client.put(url, headers=factory.headers("marketing"),
                      json={"sms": True}).status_code == 403
