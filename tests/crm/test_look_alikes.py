"""Look-alike identifiers (issue 18, point 6): fullwidth forms are the same identifier
after NFKC, and an address that only looks like another (a Cyrillic letter in it) is a
likely duplicate, scored with the reason named."""

from __future__ import annotations

from sqlalchemy import select

from crm.db import db
from crm.identifiers import look_alikes, normalize, skeleton
from crm.models import CustomerIdentifier, identifier_alike

FULLWIDTH_PAUL = "\uff50\uff41\uff55\uff4c@example.com"  # fullwidth p a u l
FULLWIDTH_AT = "paul\uff20\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com"
CYRILLIC_O = "\u043e"
PAUL_CYRILLIC = f"paul.r{CYRILLIC_O}ss@example.com"


def test_nfkc_comes_before_validation():
    assert normalize("email", FULLWIDTH_PAUL) == "paul@example.com"
    assert normalize("email", FULLWIDTH_AT) == "paul@example.com"
    assert normalize("phone", "\uff12\uff11\uff12-555-2671") == "+12125552671"
    assert normalize("card", "\uff43\uff41\uff52\uff44 \uff10\uff11") == "CARD01"
    assert normalize("shop", "\uff33\uff28\uff2f\uff30-7") == "SHOP-7"


def test_a_look_alike_keeps_its_own_value_and_gets_a_skeleton():
    value = normalize("email", PAUL_CYRILLIC)
    assert value == PAUL_CYRILLIC  # a valid address of its own: nothing is guessed
    assert skeleton(value) == "paul.ross@example.com"
    assert look_alikes(value) == ["CYRILLIC SMALL LETTER O"]
    assert skeleton("paul.ross@example.com") == "paul.ross@example.com"


def test_a_fullwidth_email_finds_the_existing_customer(client, factory):
    paul = factory.customer(first_name="Paul", email="paul@example.com")
    headers = factory.headers("shop")
    r = client.post("/api/v1/customers", headers=headers, json={"email": FULLWIDTH_PAUL})
    assert r.status_code == 409, r.get_json()
    assert r.get_json()["existing_customer_id"] == paul.id
    r = client.get("/api/v1/customers", headers=headers, query_string={"email": FULLWIDTH_AT})
    assert [c["id"] for c in r.get_json()["items"]] == [paul.id]
    r = client.post("/api/v1/customers/sync", headers=headers, json={"customers": [
        {"external_id": "W-1", "email": FULLWIDTH_PAUL, "updated_at": "2026-12-01T10:00:00Z"}]})
    assert r.status_code == 200
    assert r.get_json()["results"][0]["customer_id"] == paul.id


def test_the_duplicate_finder_names_a_look_alike_email(client, factory, runner):
    paul = factory.customer(first_name="Paul", last_name="Ross", email="paul.ross@example.com")
    r = client.post("/api/v1/customers", headers=factory.headers("shop"),
                    json={"email": PAUL_CYRILLIC, "first_name": "Pavel"})
    assert r.status_code == 201, r.get_json()  # another valid address: a new record...
    other = r.get_json()["id"]
    r = client.get(f"/api/v1/customers/{paul.id}/duplicates",
                   headers=factory.headers("marketing"))
    assert r.status_code == 200
    items = r.get_json()["items"]  # ...that the finder suggests, saying why
    assert [i["customer"]["id"] for i in items] == [other]
    assert items[0]["score"] >= 60
    assert "look-alike email (CYRILLIC SMALL LETTER O)" in items[0]["reasons"]
    r = client.get(f"/api/v1/customers/{other}/duplicates",
                   headers=factory.headers("marketing"))
    assert [i["customer"]["id"] for i in r.get_json()["items"]] == [paul.id]
    # the two share the blind index of their skeleton, never the skeleton itself
    stored = db.session.scalars(select(CustomerIdentifier.alike).where(
        CustomerIdentifier.kind == "email").order_by(CustomerIdentifier.id)).all()
    assert stored == [identifier_alike("email", "paul.ross@example.com")] * 2
    assert "paul" not in stored[0] and len(stored[0]) <= 24


def test_a_look_alike_name_is_named(client, factory):
    ana = factory.customer(first_name="Ana", last_name="Popova", phone="+14155550123")
    twin = factory.customer(first_name="An\u0430", last_name="P\u043epova",  # Cyrillic a, o
                            phone="+12125550123")
    r = client.get(f"/api/v1/customers/{ana.id}/duplicates",
                   headers=factory.headers("marketing"))
    items = r.get_json()["items"]
    assert [i["customer"]["id"] for i in items] == [twin.id]
    assert any(reason.startswith("look-alike name (") and "CYRILLIC SMALL LETTER" in reason
               for reason in items[0]["reasons"]), items[0]["reasons"]
    assert "phone numbers end alike" in items[0]["reasons"]


def test_synced_emails_get_the_index_of_their_skeleton(client, factory):
    r = client.post("/api/v1/customers/sync", headers=factory.headers("shop"), json={
        "customers": [{"external_id": "W-9", "email": PAUL_CYRILLIC,
                       "updated_at": "2026-12-01T10:00:00Z"}]})
    assert r.get_json()["results"][0]["result"] == "created", r.get_json()
    assert db.session.scalar(select(CustomerIdentifier.alike).where(
        CustomerIdentifier.kind == "email")) == identifier_alike("email", "paul.ross@example.com")
