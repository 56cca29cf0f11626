import json
from concurrent.futures import ThreadPoolExecutor

import requests


def _create(client, headers, **body):
    return client.post("/api/v1/customers", headers=headers, json=body)


def test_create_normalises_identifiers_and_reads_back(client, factory):
    shop = factory.headers("shop")
    r = _create(client, shop, email="  Ada.Lovelace@Example.COM ", phone="(415) 555-2671",
                card_number="ab-12 34", first_name=" Ada ", last_name="Lovelace",
                birthday="1990-12-10", consent={"sms": True})
    assert r.status_code == 201, r.json
    body = r.json
    assert body["email"] == "ada.lovelace@example.com"
    assert body["phone"] == "+14155552671"
    assert body["card_number"] == "AB1234"
    assert body["first_name"] == "Ada"
    assert body["consent"] == {"sms": True, "email": False}
    assert {i["kind"] for i in body["identifiers"]} == {"email", "phone", "card"}
    got = client.get(f"/api/v1/customers/{body['id']}", headers=shop)
    assert got.status_code == 200 and got.json == body


def test_phone_without_country_code_uses_default_region(client, factory, app):
    shop = factory.headers("shop")
    assert _create(client, shop, phone="212 555 0123").json["phone"] == "+12125550123"
    app.config["DEFAULT_REGION"] = "GB"
    try:
        assert _create(client, shop, phone="07911 123456").json["phone"] == "+447911123456"
    finally:
        app.config["DEFAULT_REGION"] = "US"


def test_identifier_clash_is_409_with_existing_customer(client, factory):
    first = factory.customer(email="same@example.com", phone="+14155552671")
    shop = factory.headers("shop")
    for body in ({"email": "SAME@example.com"}, {"phone": "415-555-2671"},
                 {"email": "new@example.com", "phone": "+1 415 555 2671"}):
        r = _create(client, shop, **body)
        assert r.status_code == 409, body
        assert r.json["existing_customer_id"] == first.id
        assert r.mimetype == "application/problem+json"
    assert len(client.get("/api/v1/customers", headers=shop).json["items"]) == 1


def test_invalid_identifiers_are_422_by_field_and_write_nothing(client, factory):
    shop = factory.headers("shop")
    r = _create(client, shop, email="not-an-email", phone="12", card_number="!",
                birthday="2999-01-01", first_name="x" * 101)
    assert r.status_code == 422
    assert set(r.json["errors"]) == {"birthday", "first_name"}  # schema errors come first
    r = _create(client, shop, email="not-an-email", phone="12", card_number="!")
    assert r.status_code == 422
    assert set(r.json["errors"]) == {"email", "phone", "card_number"}
    assert client.get("/api/v1/customers", headers=shop).json["items"] == []


def test_patch_updates_profile_and_replaces_identifiers(client, factory):
    c = factory.customer(email="old@example.com", first_name="Old")
    other = factory.customer(email="taken@example.com")
    shop = factory.headers("shop")
    url = f"/api/v1/customers/{c.id}"
    r = client.patch(url, headers=shop, json={"email": "New@Example.com", "city": "Lyon",
                                              "consent": {"email": True}})
    assert r.status_code == 200, r.json
    assert r.json["email"] == "new@example.com" and r.json["city"] == "Lyon"
    assert r.json["first_name"] == "Old" and r.json["consent"]["email"] is True
    assert client.get("/api/v1/customers?email=old@example.com", headers=shop).json["items"] == []

    r = client.patch(url, headers=shop, json={"email": "taken@example.com"})
    assert r.status_code == 409 and r.json["existing_customer_id"] == other.id
    r = client.patch(url, headers=shop, json={"email": None, "first_name": None})
    assert r.status_code == 200 and r.json["email"] is None and r.json["first_name"] is None
    assert client.patch(url, headers=shop, json={"id": 5}).status_code == 422
    assert client.patch("/api/v1/customers/999999", headers=shop, json={}).status_code == 404
    assert client.patch(url, headers=factory.headers("pos"), json={}).status_code == 403


def test_search_by_identifiers_and_q(client, factory):
    ada = factory.customer(email="ada@example.com", phone="+14155552671", card_number="C0001",
                           first_name="Ada", last_name="Lovelace")
    factory.customer(email="alan@example.com", first_name="Alan", last_name="Turing")
    factory.customer(email="grace@example.com", first_name="Grace", last_name="Hopper")
    pos = factory.headers("pos")
    shop = factory.headers("shop")

    def ids(query, headers=shop):
        r = client.get(f"/api/v1/customers?{query}", headers=headers)
        assert r.status_code == 200, r.json
        return [c["id"] for c in r.json["items"]]

    assert ids("email=ADA@example.com", pos) == [ada.id]
    assert ids("phone=%28415%29%20555-2671", pos) == [ada.id]
    assert ids("card=c0001", pos) == [ada.id]
    assert ids("q=ada@example.com") == [ada.id]
    assert ids("q=4155552671") == [ada.id]
    assert ids("q=love") == [ada.id]
    assert ids("q=ada%20lov") == [ada.id]
    assert len(ids("q=a")) == 2
    assert ids("q=100%25") == [] and ids("q=_") == []
    assert ids("email=nobody@example.com", pos) == []
    r = client.get("/api/v1/customers?phone=12", headers=pos)
    assert r.status_code == 422 and "phone" in r.json["errors"]
    assert client.get("/api/v1/customers?colour=red", headers=pos).status_code == 422


def test_customer_pages(client, factory):
    for _ in range(7):
        factory.customer()
    shop = factory.headers("shop")
    seen = []
    for page in (1, 2, 3):
        r = client.get(f"/api/v1/customers?page={page}&page_size=3", headers=shop)
        seen += [c["id"] for c in r.json["items"]]
        assert json.loads(r.headers["X-Pagination"])["total"] == 7
    assert len(set(seen)) == 7
    assert client.get("/api/v1/customers?page_size=101", headers=shop).status_code == 422
    assert client.get("/api/v1/customers?page=0", headers=shop).status_code == 422
    r = client.get("/api/v1/customers?page=1000000", headers=shop)
    assert r.status_code == 200 and r.json["items"] == []


def test_scopes_on_customers(client, factory):
    marketing = factory.headers("marketing")
    assert client.get("/api/v1/customers", headers=marketing).status_code == 200
    assert _create(client, marketing, email="m@example.com").status_code == 403
    assert _create(client, factory.headers("pos"), email="p@example.com").status_code == 201


def test_concurrent_creates_with_one_email_make_one_customer(live_server, factory):
    headers = factory.headers("shop")

    def post(n):
        return requests.post(f"{live_server}/api/v1/customers", headers=headers,
                             json={"email": "race@example.com", "first_name": f"R{n}"},
                             timeout=30)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(post, range(16)))
    codes = sorted(r.status_code for r in answers)
    assert codes.count(201) == 1, codes
    assert set(codes) == {201, 409}, codes
    assert all(r.headers["Content-Type"] == "application/problem+json"
               for r in answers if r.status_code == 409)
    found = requests.get(f"{live_server}/api/v1/customers?email=race@example.com",
                         headers=headers, timeout=30).json()["items"]
    assert len(found) == 1
