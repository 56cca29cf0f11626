"""Duplicates, GDPR export and erasure, and the timeline."""

from datetime import date

from sqlalchemy import func, select

from crm.db import db
from crm.models import AuditLog, DuplicateSuggestion


def test_likely_duplicates_with_score_and_reasons(client, factory, runner):
    ada = factory.customer(first_name="Ada", last_name="Lovelace", birthday=date(1990, 12, 10),
                           email="ada.lovelace@example.com", phone="+14155552671")
    twin = factory.customer(first_name="Ada", last_name="Lovelace",
                            birthday=date(1990, 12, 10), email="ada.lovelace@work.example",
                            phone="+12125552671")
    near = factory.customer(first_name="Adah", last_name="Lovelace",
                            email="ada.lovelac@example.org")
    factory.customer(first_name="Grace", last_name="Hopper", birthday=date(1990, 12, 10))
    factory.customer(first_name="Bob", last_name="Stranger")
    r = client.get(f"/api/v1/customers/{ada.id}/duplicates",
                   headers=factory.headers("marketing"))
    assert r.status_code == 200
    items = r.get_json()["items"]
    assert [i["customer"]["id"] for i in items] == [twin.id, near.id]
    assert items[0]["score"] == 100 and "same birthday" in items[0]["reasons"]
    assert "phone numbers end alike" in items[0]["reasons"]
    assert any("similar email" in x for x in items[0]["reasons"])
    assert items[1]["score"] < items[0]["score"]
    result = runner.invoke(args=["customers", "find-duplicates"])
    assert result.exit_code == 0 and "suggestion(s) recorded" in result.output
    again = runner.invoke(args=["customers", "find-duplicates"])
    assert again.exit_code == 0
    pairs = set(db.session.execute(select(DuplicateSuggestion.customer_id,
                                          DuplicateSuggestion.other_id)).all())
    assert {(ada.id, twin.id), (twin.id, ada.id)} <= pairs
    assert client.get(f"/api/v1/customers/{ada.id}/duplicates",
                      headers=factory.headers("pos")).status_code == 403


def test_export_holds_everything_and_is_recorded(client, factory):
    c = factory.customer(first_name="Ada", email="ada@example.com", consent={"sms": True})
    admin = factory.headers("admin")
    r = client.get(f"/api/v1/customers/{c.id}/export", headers=admin)
    assert r.status_code == 200
    body = r.get_json()
    assert body["customer"]["first_name"] == "Ada"
    assert body["identifiers"][0]["value"] == "ada@example.com"
    assert body["consent_history"][0]["granted"] is True
    assert body["loyalty"]["accounts"] == [] and "purchases" in body["loyalty"]
    assert db.session.scalar(select(AuditLog.action).where(AuditLog.action == "export")
                             .where(AuditLog.object_type == "customer")) == "export"
    assert client.get(f"/api/v1/customers/{c.id}/export",
                      headers=factory.headers("shop")).status_code == 403


def test_erasure_removes_personal_data_and_keeps_totals(client, factory):
    store = factory.store("ER1", currency="EUR")
    pos = factory.headers("pos", store=store.code)
    c = factory.customer(first_name="Ada", last_name="L", email="ada@example.com",
                         phone="+14155552671", birthday=date(1990, 1, 1))
    r = client.post("/api/v1/purchases", headers=pos, json={
        "receipt_id": "E1", "occurred_at": "2026-11-01T10:00:00Z", "currency": "EUR",
        "total": "10.00", "customer": {"id": c.id},
        "lines": [{"sku": "A", "quantity": 1, "unit_price": "10.00"}]})
    assert r.status_code == 201
    admin = factory.headers("admin")
    r = client.delete(f"/api/v1/customers/{c.id}", headers=admin)
    assert r.status_code == 200 and r.get_json()["erased_at"]
    profile = client.get(f"/api/v1/customers/{c.id}", headers=admin).get_json()
    assert profile["first_name"] is None and profile["identifiers"] == []
    assert profile["birthday"] is None and profile["consent"] == {"sms": False, "email": False}
    assert profile["points_balance"] == 10
    assert client.get("/api/v1/customers?email=ada@example.com",
                      headers=admin).get_json()["items"] == []
    # the address is free again: a new customer may use it
    assert client.post("/api/v1/customers", headers=pos,
                       json={"email": "ada@example.com"}).status_code == 201
    assert db.session.scalar(select(func.count()).select_from(AuditLog)
                             .where(AuditLog.action == "erase")) == 1
    assert client.delete(f"/api/v1/customers/{c.id}", headers=pos).status_code == 403
    assert client.patch(f"/api/v1/customers/{c.id}", headers=factory.headers("shop"),
                        json={"first_name": "Back"}).status_code == 409


def test_timeline_in_time_order_and_paginated(client, factory):
    store = factory.store("TL1", currency="EUR")
    pos = factory.headers("pos", store=store.code)
    c = factory.customer(consent={"email": True})
    for n, day in enumerate(("2026-11-01", "2026-11-03")):
        client.post("/api/v1/purchases", headers=pos, json={
            "receipt_id": f"T{n}", "occurred_at": f"{day}T10:00:00Z", "currency": "EUR",
            "total": "12.30", "customer": {"id": c.id},
            "lines": [{"sku": "A", "quantity": 1, "unit_price": "12.30"}]})
    shop = factory.headers("shop")
    client.put(f"/api/v1/customers/{c.id}/consent", headers=shop, json={"sms": True})
    r = client.get(f"/api/v1/customers/{c.id}/timeline?page_size=100", headers=shop)
    assert r.status_code == 200
    items = r.get_json()["items"]
    assert {i["type"] for i in items} == {"purchase", "points", "consent"}
    stamps = [i["at"] for i in items]
    assert stamps == sorted(stamps, reverse=True)
    purchase = next(i for i in items if i["type"] == "purchase")
    assert purchase["amount"] == "12.30" and purchase["points"] == 12
    assert any(i["label"] == "sms granted by shop" for i in items)
    first = client.get(f"/api/v1/customers/{c.id}/timeline?page_size=2", headers=shop)
    assert len(first.get_json()["items"]) == 2 and "next_page" in first.headers["X-Pagination"]
    assert client.get(f"/api/v1/customers/{c.id}/timeline", headers=pos).status_code == 403
