"""API keys: scope-named prefixes, expiry and allowed addresses checked on every request
(cached keys too), last use written off the request, rotation with an overlap, failed
authentications limited per address and per key prefix."""

import hashlib
import re
import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from crm import keys
from crm.db import db, utcnow
from crm.models import ApiKey, SecurityAlert


def _bearer(key):
    return {"Authorization": f"Bearer {key}"}


def _from(address):
    return {"REMOTE_ADDR": address}


def _alerts(rule):
    db.session.rollback()
    return db.session.scalars(select(SecurityAlert).where(SecurityAlert.rule == rule)).all()


def _row(key_id):
    db.session.rollback()
    return db.session.get(ApiKey, key_id)


def test_keys_name_their_scope_and_old_keys_keep_working(client, factory):
    pos, admin = factory.key("pos"), factory.key("admin")
    assert re.fullmatch(r"crm_pos_[a-z0-9]{12}_[\w-]{43}", pos)
    assert admin.startswith("crm_admin_")
    assert factory.key("shop", "marketing").startswith("crm_shop-marketing_")
    # A key made before scope names: crm_<prefix>_<secret>.
    old = "crm_0123456789ab_" + "A" * 43
    db.session.add(ApiKey(name="old", prefix="0123456789ab", scopes="admin",
                          key_hash=hashlib.sha256(old.encode()).hexdigest()))
    db.session.commit()
    assert client.get("/api/v1/stores", headers=_bearer(old)).status_code == 200
    assert client.get("/api/v1/stores", headers=_bearer(pos)).status_code == 200


def test_an_expired_key_stops_even_while_cached(client, factory, app):
    db.session.rollback()
    _, key = keys.create_key("soon", ["marketing"],
                             expires_at=utcnow() + timedelta(seconds=1.5))
    db.session.commit()
    assert client.get("/api/v1/stores", headers=_bearer(key)).status_code == 200  # now cached
    time.sleep(1.6)
    r = client.get("/api/v1/stores", headers=_bearer(key))
    assert r.status_code == 401
    with pytest.raises(Exception, match="past"):
        keys.create_key("late", ["marketing"], expires_at=utcnow() - timedelta(seconds=1))


def test_allowed_ips_are_checked_on_every_request(client, factory):
    admin = factory.headers("admin")
    r = client.post("/api/v1/api-keys", headers=admin, json={
        "name": "till 3", "scopes": ["marketing"], "allowed_ips": ["10.0.0.0/8", "192.0.2.7"]})
    assert r.status_code == 201, r.json
    assert r.json["allowed_ips"] == ["10.0.0.0/8", "192.0.2.7/32"]
    key, key_id = r.json["key"], r.json["id"]
    ok = client.get("/api/v1/stores", headers=_bearer(key), environ_base=_from("10.1.2.3"))
    assert ok.status_code == 200  # and the key is cached now
    refused = client.get("/api/v1/stores", headers=_bearer(key),
                         environ_base=_from("198.51.100.9"))
    assert refused.status_code == 403 and refused.json["type"].endswith("address-not-allowed")
    [alert] = _alerts("key_outside_allowed_ips")
    assert alert.subject == f"key:{key_id}" and "198.51.100.9" in alert.detail
    assert client.get("/api/v1/stores", headers=_bearer(key),
                      environ_base=_from("192.0.2.7")).status_code == 200
    bad = client.post("/api/v1/api-keys", headers=admin,
                      json={"name": "x", "scopes": ["marketing"], "allowed_ips": ["10.0.0.300"]})
    assert bad.status_code == 422 and "allowed_ips" in bad.json["errors"]


def test_last_use_is_written_at_most_once_a_minute_and_a_new_network_alerts(client, factory):
    key = factory.key("marketing")
    key_id = db.session.scalar(select(ApiKey.id))
    assert client.get("/api/v1/stores", headers=_bearer(key),
                      environ_base=_from("203.0.113.5")).status_code == 200
    first = _row(key_id)
    assert first.last_used_address == "203.0.113.5" and first.networks == ["203.0.113.0/24"]
    used_at = first.last_used_at
    client.get("/api/v1/stores", headers=_bearer(key), environ_base=_from("203.0.113.6"))
    assert _row(key_id).last_used_at == used_at  # within the minute, same network: no write
    assert _alerts("key_new_network") == []  # the first network is the key's own
    client.get("/api/v1/stores", headers=_bearer(key), environ_base=_from("198.51.100.20"))
    row = _row(key_id)
    assert row.networks == ["203.0.113.0/24", "198.51.100.0/24"]
    assert row.last_used_address == "198.51.100.20"
    [alert] = _alerts("key_new_network")
    assert alert.subject == f"key:{key_id}"
    listed = client.get("/api/v1/api-keys", headers=factory.headers("admin")).json["items"]
    shown = next(k for k in listed if k["id"] == key_id)
    assert shown["last_used_at"] and shown["last_used_address"] == "198.51.100.20"


def test_rotation_keeps_the_old_key_for_the_overlap(client, factory, runner):
    admin = factory.headers("admin")
    old = client.post("/api/v1/api-keys", headers=admin,
                      json={"name": "shop", "scopes": ["shop"]}).json
    r = client.post(f"/api/v1/api-keys/{old['id']}/rotate", headers=admin,
                    json={"overlap_hours": 2})
    assert r.status_code == 201, r.json
    new = r.json
    assert new["key"].startswith("crm_shop_") and new["rotated_from_id"] == old["id"]
    for key in (old["key"], new["key"]):
        assert client.get("/api/v1/stores", headers=_bearer(key)).status_code == 200
    ends = _row(old["id"]).expires_at
    assert timedelta(hours=1.9) < ends - utcnow() <= timedelta(hours=2)
    # No overlap: the old key stops at once (its cached entry too).
    now = client.post(f"/api/v1/api-keys/{new['id']}/rotate", headers=admin,
                      json={"overlap_hours": 0}).json
    assert client.get("/api/v1/stores", headers=_bearer(new["key"])).status_code == 401
    assert client.get("/api/v1/stores", headers=_bearer(now["key"])).status_code == 200
    out = runner.invoke(args=["keys", "rotate", str(now["id"]), "--overlap-hours", "1"])
    assert out.exit_code == 0, out.output
    assert out.output.splitlines()[-1].startswith("crm_shop_")


def test_cli_creates_keys_with_expiry_and_addresses(runner, factory):
    out = runner.invoke(args=["keys", "create", "--name", "kiosk", "--scope", "marketing",
                              "--expires-at", "2099-01-01T00:00", "--allowed-ip", "10.0.0.0/8",
                              "--allowed-ip", "192.0.2.1"])
    assert out.exit_code == 0, out.output
    row = db.session.scalar(select(ApiKey).where(ApiKey.name == "kiosk"))
    assert row.allowed_ips == ["10.0.0.0/8", "192.0.2.1/32"]
    assert row.expires_at.year == 2099 and row.expires_at.utcoffset() == timedelta(0)
    listed = runner.invoke(args=["keys", "list"]).output
    assert "until 2099-01-01T00:00Z" in listed and "used never" in listed
    bad = runner.invoke(args=["keys", "create", "--name", "k", "--scope", "marketing",
                              "--allowed-ip", "nope"])
    assert bad.exit_code != 0


@pytest.fixture
def limit3(app, monkeypatch):
    monkeypatch.setitem(app.config, "AUTH_FAILURE_LIMIT", 3)


def test_failed_authentications_per_address_are_limited(client, factory, limit3):
    good = factory.headers("marketing")
    wrong = _bearer("crm_pos_aaaaaaaaaaaa_" + "B" * 43)
    for _ in range(3):  # exactly at the limit: still a 401
        assert client.get("/api/v1/stores", headers=wrong).status_code == 401
    assert _alerts("auth_failures") == []
    r = client.get("/api/v1/stores", headers=_bearer("garbage"))  # one more: 429
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    subjects = {a.subject for a in _alerts("auth_failures")}
    assert "address:127.0.0.1" in subjects
    # The other tills behind the same address keep working.
    assert client.get("/api/v1/stores", headers=good).status_code == 200
    # Another address is not affected.
    assert client.get("/api/v1/stores", headers=_bearer("garbage"),
                      environ_base=_from("198.51.100.1")).status_code == 401


def test_failed_authentications_per_key_prefix_are_limited(client, factory, limit3):
    key = factory.key("marketing")
    guess = key[:-5] + "XXXXX"
    for n in range(3):
        r = client.get("/api/v1/stores", headers=_bearer(guess),
                       environ_base=_from(f"198.51.100.{n + 1}"))
        assert r.status_code == 401
    r = client.get("/api/v1/stores", headers=_bearer(guess), environ_base=_from("198.51.100.9"))
    assert r.status_code == 429
    prefix = keys.prefix_of(key)
    assert {a.subject for a in _alerts("auth_failures")} == {f"key_prefix:{prefix}"}
    assert client.get("/api/v1/stores", headers=_bearer(key)).status_code == 200
