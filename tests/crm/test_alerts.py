"""Security alerts: raised by rules in the caller's transaction, counted while open,
listed and resolved by administrators."""

from concurrent.futures import ThreadPoolExecutor

import requests

from crm import alerts, signals
from crm.db import db


def _raise(rule: str = "failed-auth", subject: str = "address:203.0.113.9") -> int:
    alert = alerts.raise_alert(rule, subject, "12 failed authentications in 60 s")
    db.session.commit()
    return alert.id


def test_an_open_alert_counts_repeats_and_a_resolved_one_opens_anew(client, factory):
    admin = factory.headers("admin")
    first = _raise()
    assert _raise() == first
    other = _raise(subject="address:198.51.100.7")
    r = client.get("/api/v1/security/alerts?status=open", headers=admin)
    assert r.status_code == 200
    items = r.get_json()["items"]
    assert [(a["id"], a["count"]) for a in items] == [(other, 1), (first, 2)]
    assert items[1]["rule"] == "failed-auth" and items[1]["status"] == "open"

    r = client.post(f"/api/v1/security/alerts/{first}/resolve", headers=admin,
                    json={"resolution": "a till misconfigured"})
    assert r.status_code == 200
    assert r.get_json()["status"] == "resolved"
    assert r.get_json()["resolved_by"].startswith("key:")
    again = client.post(f"/api/v1/security/alerts/{first}/resolve", headers=admin, json={})
    assert again.status_code == 409
    assert _raise() not in (first, other)  # the same rule and subject opens a new one
    resolved = client.get("/api/v1/security/alerts?status=resolved", headers=admin)
    assert [a["id"] for a in resolved.get_json()["items"]] == [first]


def test_alerts_are_for_administrators_only(client, factory):
    alert = _raise()
    for scope in ("pos", "shop", "marketing"):
        headers = factory.headers(scope)
        assert client.get("/api/v1/security/alerts", headers=headers).status_code == 403
        assert client.post(f"/api/v1/security/alerts/{alert}/resolve", headers=headers,
                           json={}).status_code == 403
    assert client.get("/api/v1/security/alerts").status_code == 401
    admin = factory.headers("admin")
    assert client.get("/api/v1/security/alerts?status=nope", headers=admin).status_code == 422
    assert client.post("/api/v1/security/alerts/999/resolve", headers=admin,
                       json={}).status_code == 404


def test_an_alert_rolled_back_with_its_change_is_never_seen(app, factory):
    seen = []

    def receiver(_sender, alert, **_):
        seen.append(alert.rule)

    signals.security_alert_raised.connect(receiver)
    try:
        alerts.raise_alert("rolled-back", "key:1", "never committed")
        db.session.rollback()
        assert seen == ["rolled-back"]  # receivers write in the same transaction
        assert db.session.scalars(alerts.list_alerts()).all() == []
    finally:
        signals.security_alert_raised.disconnect(receiver)


def test_concurrent_raises_open_one_alert(app, factory, live_server):
    def raise_one(_: int) -> None:
        with app.app_context():
            alerts.raise_alert("burst", "key:7", "many at once")
            db.session.commit()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(raise_one, range(16)))
    db.session.rollback()
    rows = db.session.scalars(alerts.list_alerts()).all()
    assert [(a.rule, a.count) for a in rows] == [("burst", 16)]
    admin = factory.headers("admin")
    r = requests.get(f"{live_server}/api/v1/security/alerts", headers=admin, timeout=10)
    assert r.json()["items"][0]["count"] == 16
