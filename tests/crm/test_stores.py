import json


def test_create_get_and_list_stores(client, factory):
    admin = factory.headers("admin")
    body = {"code": "PAR01", "name": " Paris Opéra ", "timezone": "Europe/Paris",
            "channel": "store", "currency": "EUR"}
    r = client.post("/api/v1/stores", headers=admin, json=body)
    assert r.status_code == 201, r.json
    assert r.json["name"] == "Paris Opéra" and r.json["created_at"].endswith("+00:00")
    shop = factory.headers("shop")
    assert client.get("/api/v1/stores/PAR01", headers=shop).json["timezone"] == "Europe/Paris"
    assert client.get("/api/v1/stores/NOPE", headers=shop).status_code == 404

    for n in range(5):
        factory.store(f"X{n}")
    r = client.get("/api/v1/stores?page=2&page_size=2", headers=shop)
    assert r.status_code == 200
    assert [s["code"] for s in r.json["items"]] == ["X1", "X2"]
    meta = json.loads(r.headers["X-Pagination"])
    assert meta["total"] == 6 and meta["total_pages"] == 3 and meta["next_page"] == 3


def test_duplicate_code_is_409(client, factory):
    factory.store("DUP")
    r = client.post("/api/v1/stores", headers=factory.headers("admin"),
                    json={"code": "DUP", "name": "again", "timezone": "UTC",
                          "channel": "online", "currency": "USD"})
    assert r.status_code == 409 and r.mimetype == "application/problem+json"


def test_store_validation_names_each_bad_field(client, factory):
    admin = factory.headers("admin")
    r = client.post("/api/v1/stores", headers=admin,
                    json={"code": "bad code!", "name": "", "timezone": "Mars/Olympus",
                          "channel": "mail", "currency": "usd"})
    assert r.status_code == 422
    assert set(r.json["errors"]) == {"code", "name", "timezone", "channel", "currency"}
    for tz in ("", "../../etc/passwd", "X" * 300):
        r = client.post("/api/v1/stores", headers=admin,
                        json={"code": "T", "name": "t", "timezone": tz,
                              "channel": "store", "currency": "EUR"})
        assert r.status_code == 422 and "timezone" in r.json["errors"]
    r = client.post("/api/v1/stores", headers=admin,
                    json={"code": "T", "name": "t", "timezone": "Europe/Paris\x00",
                          "channel": "store", "currency": "EUR"})
    assert r.status_code == 400 and r.json["type"].endswith("nul-character")
    r = client.post("/api/v1/stores", headers=admin,
                    json={"code": "T", "name": "t", "timezone": "UTC", "channel": "store",
                          "currency": "XYZ"})
    assert r.status_code == 422 and "currency" in r.json["errors"]
    assert client.get("/api/v1/stores", headers=admin).json["items"] == []


def test_only_admin_creates_stores(client, factory):
    r = client.post("/api/v1/stores", headers=factory.headers("marketing"),
                    json={"code": "M", "name": "m", "timezone": "UTC", "channel": "store",
                          "currency": "EUR"})
    assert r.status_code == 403
