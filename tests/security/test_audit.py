"""The audit log: who changed what, chained by SHA-256, append-only by trigger on both
databases, searchable by admins; no personal values in it nor in the request log."""

import json
import logging
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import select, text
from sqlalchemy.exc import DatabaseError

from crm.db import db, write_intent
from crm.models import AuditLog

EMAIL, PHONE = "ada.lovelace@example.com", "+12125550001"


def _rows(**where):
    db.session.rollback()
    stmt = select(AuditLog).order_by(AuditLog.id)
    for name, value in where.items():
        stmt = stmt.where(getattr(AuditLog, name) == value)
    return db.session.scalars(stmt).all()


def _changes(client, factory):
    """One change of each audited kind, through the API; answers the admin headers."""
    admin = factory.headers("admin")
    marketing = factory.headers("marketing")
    shop = factory.headers("shop")
    ada = client.post("/api/v1/customers", headers=shop, json={
        "email": EMAIL, "phone": PHONE, "first_name": "Ada", "last_name": "Lovelace",
        "consent": {"sms": True}}).json["id"]
    other = client.post("/api/v1/customers", headers=shop,
                        json={"email": "other@example.com"}).json["id"]
    steps = [
        client.put("/api/v1/loyalty/program", headers=admin,
                   json={"points_per_unit": "2", "currency": "EUR"}),
        client.post("/api/v1/loyalty/tiers", headers=admin,
                    json={"name": "Gold", "threshold_points": 500, "window_days": 365}),
        client.post(f"/api/v1/customers/{ada}/points/adjustments", headers=admin,
                    json={"points": 50, "reason": "goodwill"}),
        client.put(f"/api/v1/customers/{ada}/consent", headers=shop, json={"email": True}),
        client.post("/api/v1/offers", headers=marketing,
                    json={"name": "10 off", "kind": "percent", "value": "10"}),
        client.get(f"/api/v1/customers/{ada}/export", headers=admin),
        client.post(f"/api/v1/customers/{ada}/merge", headers=admin,
                    json={"source_customer_id": other}),
        client.post(f"/api/v1/customers/{ada}/unmerge", headers=admin,
                    json={"source_customer_id": other}),
        client.delete(f"/api/v1/customers/{other}", headers=admin),
    ]
    for r in steps:
        assert r.status_code < 300, r.json
    return admin, ada


def test_changes_are_audited_without_personal_values(client, factory, caplog):
    caplog.set_level(logging.INFO, logger="crm.request")
    _, ada = _changes(client, factory)
    rows = _rows()
    kinds = {(r.action, r.object_type) for r in rows}
    for kind in [("create", "api_key"), ("consent", "customer"), ("update", "program"),
                 ("create", "tier"), ("adjust_points", "customer"), ("create", "offer"),
                 ("export", "customer"), ("merge", "customer"), ("unmerge", "customer"),
                 ("erase", "customer")]:
        assert kind in kinds, kind
    adjust = next(r for r in rows if r.action == "adjust_points")
    assert adjust.object_id == str(ada) and adjust.actor.startswith("key:")
    assert adjust.before == {"balance": 0} and adjust.after["balance"] == 50
    assert adjust.request_id and adjust.address == "127.0.0.1"
    program = next(r for r in rows if r.object_type == "program")
    assert "points_per_unit" in program.fields and program.after["points_per_unit"] == "2"
    erase = next(r for r in rows if r.action == "erase")
    assert "email" not in erase.fields and "first_name" in erase.fields
    dumped = json.dumps([[r.actor, r.fields, r.before, r.after] for r in rows])
    log_lines = " ".join(rec.getMessage() + json.dumps(getattr(rec, "fields", {}))
                         for rec in caplog.records)
    for personal in (EMAIL, PHONE, "5550001", "Lovelace", "other@example.com"):
        assert personal not in dumped and personal not in log_lines, personal


def test_admins_search_the_log(client, factory):
    admin, ada = _changes(client, factory)
    r = client.get(f"/api/v1/audit?object_type=customer&object_id={ada}", headers=admin)
    assert r.status_code == 200
    actions = [i["action"] for i in r.json["items"]]
    assert "adjust_points" in actions and "export" in actions
    assert all(i["object_id"] == str(ada) for i in r.json["items"])
    first = r.json["items"][-1]
    actor = first["actor"]
    by_actor = client.get("/api/v1/audit", headers=admin, query_string={"actor": actor}).json
    assert by_actor["items"] and all(i["actor"] == actor for i in by_actor["items"])
    at = first["created_at"]
    later = client.get("/api/v1/audit", headers=admin, query_string={"from": at}).json["items"]
    earlier = client.get("/api/v1/audit", headers=admin, query_string={"to": at}).json["items"]
    assert later and all(i["created_at"] >= at for i in later)
    assert all(i["created_at"] < at for i in earlier)
    assert client.get("/api/v1/audit", headers=factory.headers("marketing")).status_code == 403
    assert client.get("/api/v1/audit?colour=red", headers=admin).status_code == 422


def _writing(sql, params=None):
    token = write_intent.set(True)
    try:
        db.session.rollback()
        db.session.execute(text(sql), params or {})
        db.session.commit()
    finally:
        write_intent.reset(token)
        db.session.rollback()


@pytest.mark.parametrize("sql", ["UPDATE audit_log SET actor = 'someone else'",
                                 "DELETE FROM audit_log", "TRUNCATE audit_log"])
def test_update_and_delete_are_refused(client, factory, sql):
    _changes(client, factory)
    if sql.startswith("TRUNCATE") and db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no TRUNCATE")
    before = len(_rows())
    with pytest.raises(DatabaseError, match="append-only"):
        _writing(sql)
    assert len(_rows()) == before


def _without_triggers(sql, params=None):
    """What an attacker with the database's owner rights does; the triggers come back."""
    token = write_intent.set(True)
    try:
        db.session.rollback()
        if db.engine.dialect.name == "postgresql":
            db.session.execute(text("ALTER TABLE audit_log DISABLE TRIGGER USER"))
            db.session.execute(text(sql), params or {})
            db.session.execute(text("ALTER TABLE audit_log ENABLE TRIGGER USER"))
        else:
            triggers = db.session.execute(text(
                "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
                "AND tbl_name = 'audit_log'")).all()
            for name, _ in triggers:
                db.session.execute(text(f"DROP TRIGGER {name}"))
            db.session.execute(text(sql), params or {})
            for _, ddl in triggers:
                db.session.execute(text(ddl))
        db.session.commit()
    finally:
        write_intent.reset(token)


def test_verify_names_the_first_bad_row(client, factory, runner):
    _changes(client, factory)
    ok = runner.invoke(args=["audit", "verify"])
    assert ok.exit_code == 0 and "intact" in ok.output, ok.output
    rows = _rows()
    target = rows[len(rows) // 2]
    original, target_id, third, fourth = target.after, target.id, rows[2].id, rows[3].id
    _without_triggers("UPDATE audit_log SET after = :after WHERE id = :id",
                      {"after": json.dumps({"balance": 1_000_000}), "id": target_id})
    bad = runner.invoke(args=["audit", "verify"])
    assert bad.exit_code == 1 and f"row {target_id}:" in bad.output, bad.output
    assert "content" in bad.output
    # Put it back, then remove a row: the next one is named.
    _without_triggers("UPDATE audit_log SET after = :after WHERE id = :id",
                      {"after": json.dumps(original), "id": target_id})
    assert runner.invoke(args=["audit", "verify"]).exit_code == 0
    _without_triggers("DELETE FROM audit_log WHERE id = :id", {"id": third})
    gone = runner.invoke(args=["audit", "verify"])
    assert gone.exit_code == 1 and f"row {fourth}:" in gone.output, gone.output


def test_concurrent_writers_keep_one_chain(live_server, factory, runner):
    shop = factory.headers("shop")
    ids = [factory.customer().id for _ in range(4)]

    def consent(n):
        return requests.put(f"{live_server}/api/v1/customers/{ids[n % 4]}/consent",
                            headers=shop, json={"sms": n % 2 == 0}, timeout=30).status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(consent, range(24))) == {200}
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 0, result.output
    assert len([r for r in _rows(action="consent")]) >= 24
