def test_program_settings_read_and_change(client, factory):
    admin = factory.headers("admin")
    r = client.get("/api/v1/loyalty/program", headers=admin)
    assert r.status_code == 200
    assert r.get_json()["points_per_unit"] == "1" and r.get_json()["point_value"] == "0.01"
    r = client.put("/api/v1/loyalty/program", headers=admin, json={
        "points_per_unit": "2.5", "point_value": "0.005", "rounding": "round",
        "pending_days": 14, "expiry_days": 0, "allow_negative": True, "currency": "EUR"})
    assert r.status_code == 200, r.get_json()
    body = client.get("/api/v1/loyalty/program", headers=admin).get_json()
    assert body["points_per_unit"] == "2.5" and body["point_value"] == "0.005"
    assert body["expiry_days"] == 0 and body["allow_negative"] is True


def test_program_rejects_bad_settings(client, factory):
    admin = factory.headers("admin")
    for body, field in (({"points_per_unit": 1.5}, "points_per_unit"),
                        ({"points_per_unit": "-1"}, "points_per_unit"),
                        ({"point_value": "0"}, "point_value"),
                        ({"rounding": "up"}, "rounding"),
                        ({"pending_days": "14"}, "pending_days"),
                        ({"currency": "eur"}, "currency"),
                        ({"nope": 1}, "nope")):
        r = client.put("/api/v1/loyalty/program", headers=admin, json=body)
        assert r.status_code == 422 and field in r.get_json()["errors"], (body, r.get_json())
    assert client.get("/api/v1/loyalty/program",
                      headers=factory.headers("marketing")).status_code == 403


def test_points_per_unit_and_rounding(client, factory):
    admin = factory.headers("admin")
    client.put("/api/v1/loyalty/program", headers=admin,
               json={"points_per_unit": "0.5", "rounding": "ceil", "currency": "EUR"})
    store = factory.store("P", currency="EUR")
    pos = factory.headers("pos", store=store.code)
    c = factory.customer()
    r = client.post("/api/v1/purchases", headers=pos, json={
        "receipt_id": "1", "occurred_at": "2026-11-01T10:00:00+01:00", "currency": "EUR",
        "total": "10.50", "customer": {"id": c.id},
        "lines": [{"sku": "A", "quantity": 1, "unit_price": "10.50"}]})
    assert r.status_code == 201 and r.get_json()["points_earned"] == 6
