"""Personal data encrypted at rest (crm/pii.py): sealing bound to table, column and row,
blind indexes, the key file, no marker value in the database files or a pg_dump, the
migration that seals existing rows, and key rotation while the service runs."""

from __future__ import annotations

import os
import stat
import subprocess
import threading
from datetime import date
from pathlib import Path

import flask_migrate
import pytest
from sqlalchemy import event, insert, make_url, select, text

from campaigns import inbound, outbox
from crm import create_app, pii, rekey
from crm.db import db
from crm.models import Customer, CustomerIdentifier, identifier_alike, identifier_row

MARKERS = {"email": "zqmarker7431@example.com", "phone": "+12125550199",
           "card_number": "ZQCARD7431", "birthday": "1987-03-14"}
SECRET_TEXTS = ["ZQBODY7431 your points", "ZQINBOUND7431 hello"]


def _needles() -> list[bytes]:
    """Each marker as it could be stored: as given, normalised, and its digits."""
    values = [*MARKERS.values(), "2125550199", "zqmarker7431", "ZQCARD7431",
              "ZQBODY7431", "ZQINBOUND7431"]
    return [v.encode() for v in values] + [v.encode("utf-16-le") for v in values]


def test_sealing_is_bound_to_table_column_and_row(app):
    with app.app_context():
        ring = pii.keyring()
        sealed = ring.seal("customers", "birthday_sealed", 7, "1990-12-10")
        assert sealed.startswith(f"{ring.current}$") and "1990" not in sealed
        assert ring.open("customers", "birthday_sealed", 7, sealed) == "1990-12-10"
        assert ring.seal("customers", "birthday_sealed", 7, "1990-12-10") != sealed  # nonce
        for table, column, row in (("customers", "birthday_sealed", 8),
                                   ("customers", "other", 7), ("messages", "birthday_sealed", 7)):
            with pytest.raises(pii.CannotOpen):
                ring.open(table, column, row, sealed)
        key_id, _, body = sealed.partition("$")
        flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
        with pytest.raises(pii.CannotOpen):
            ring.open("customers", "birthday_sealed", 7, f"{key_id}${flipped}")
        with pytest.raises(pii.CannotOpen):
            ring.open("customers", "birthday_sealed", 7, f"zz${body}")


def test_blind_indexes_are_keyed_truncated_and_versioned(app):
    with app.app_context():
        one = pii.blind_index("phone", "+12125550199")
        assert one == pii.blind_index("phone", "+12125550199")
        assert one != pii.blind_index("email", "+12125550199")  # a subkey per kind
        assert one.startswith("1.") and len(one) == 2 + 22  # 16 bytes, base64url
        assert pii.blind_index("phone", "+12125550199", version=2).startswith("2.")
        assert pii.blind_index("phone", "+12125550199", version=2) != one
        fragment = pii.fragment_index("phone_end", "5550199")
        assert len(fragment) == 2 + 11  # 8 bytes
        other = pii.Keyring(pii.parse_keys(f"k1:{pii.new_key()}"), os.urandom(32), "env")
        assert other.index("phone", "+12125550199", 1) != one  # another index key


def test_the_key_file_is_made_once_private_and_shared(tmp_path, database_url):
    folder = tmp_path / "instance"
    first = create_app({"DATABASE_URL": database_url, "INSTANCE_PATH": str(folder),
                        "PII_KEYS": None, "PII_INDEX_KEY": None})
    path = folder / pii.KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().splitlines()[0].startswith("k1:")
    again = create_app({"DATABASE_URL": database_url, "INSTANCE_PATH": str(folder),
                        "PII_KEYS": None, "PII_INDEX_KEY": None})
    ring, ring2 = first.extensions["pii"], again.extensions["pii"]
    sealed = ring.seal("t", "c", 1, "x")
    assert ring2.open("t", "c", 1, sealed) == "x"
    assert ring.index("email", "a@b.co", 1) == ring2.index("email", "a@b.co", 1)
    with pytest.raises(pii.KeyRingError):
        create_app({"DATABASE_URL": database_url, "INSTANCE_PATH": str(folder),
                    "PII_KEYS": f"k1:{pii.new_key()}", "PII_INDEX_KEY": None})


def test_values_are_stored_sealed_and_found_by_their_blind_index(client, factory):
    shop = factory.headers("shop")
    r = client.post("/api/v1/customers", headers=shop, json={
        **MARKERS, "phone": "(212) 555-0199", "first_name": "Zq"})
    assert r.status_code == 201, r.get_json()
    cid = r.get_json()["id"]
    row = db.session.execute(text(
        "SELECT birthday_sealed, birth_year, birth_month, birthday_index FROM customers "
        "WHERE id = :i"), {"i": cid}).one()
    assert "1987-03-14" not in row[0] and row[1:3] == (1987, 3) and row[3]
    stored = db.session.execute(text(
        "SELECT kind, lookup, sealed FROM customer_identifiers WHERE customer_id = :i"),
        {"i": cid}).all()
    assert {k for k, _, _ in stored} == {"email", "phone", "card"}
    for _, lookup, sealed in stored:
        # the whole markers (a random index may hold two of their letters by chance)
        assert not {"zqmarker7431", "zqcard7431", "5550199"} & {
            lookup.lower()[i:i + n] for n in (7, 10, 12) for i in range(len(lookup))}
        assert "$" in sealed
    for query in ("phone=212-555-0199", "email=ZQMarker7431@Example.com",
                  "card=zqcard7431", "q=+1 212 555 0199"):
        found = client.get(f"/api/v1/customers?{query}", headers=shop).get_json()["items"]
        assert [c["id"] for c in found] == [cid], query
    profile = client.get(f"/api/v1/customers/{cid}", headers=shop).get_json()
    assert (profile["email"], profile["phone"], profile["card_number"], profile["birthday"]) \
        == ("zqmarker7431@example.com", "+12125550199", "ZQCARD7431", "1987-03-14")


def _write_markers(client, factory) -> int:
    r = client.post("/api/v1/customers", headers=factory.headers("shop"),
                    json={**MARKERS, "first_name": "Zq", "consent": {"sms": True}})
    assert r.status_code == 201, r.get_json()
    customer = db.session.get(Customer, r.get_json()["id"])
    outbox.queue(customer, SECRET_TEXTS[0], "campaign")
    inbound.receive("SMzq7431", MARKERS["phone"], SECRET_TEXTS[1])
    db.session.commit()
    # an update rewrites the row: the old version must not stay behind either
    r = client.patch(f"/api/v1/customers/{customer.id}", headers=factory.headers("shop"),
                     json={"city": "Lyon", "birthday": "1987-03-15"})
    assert r.status_code == 200, r.get_json()
    return customer.id


def test_no_marker_in_the_sqlite_files(client, factory, database_url):
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite's files; PostgreSQL is test_no_marker_in_a_pg_dump")
    _write_markers(client, factory)
    db.session.rollback()
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA secure_delete").scalar() == 1
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    path = Path(make_url(database_url).database)
    files = [p for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()]
    assert path in files
    for file in files:
        # read by another process: closing a descriptor of the database file here would
        # drop every SQLite lock this process holds on it (POSIX locks are per process)
        content = subprocess.run(["cat", str(file)], capture_output=True, check=True).stdout
        for needle in _needles():
            assert needle not in content, (file.name, needle)
    # the test itself can see them: through the key ring
    assert db.session.scalar(select(CustomerIdentifier).where(
        CustomerIdentifier.kind == "card")).value == "ZQCARD7431"


def test_no_marker_in_a_pg_dump(client, factory, database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's dump; SQLite is test_no_marker_in_the_sqlite_files")
    _write_markers(client, factory)
    db.session.rollback()
    url = make_url(database_url)
    dump = subprocess.run(
        ["pg_dump", "-h", url.host or "127.0.0.1", "-p", str(url.port or 5432),
         "-U", url.username or "postgres", "--data-only", url.database],
        capture_output=True, check=True, timeout=120).stdout
    assert b"customer_identifiers" in dump and len(dump) > 1000
    for needle in _needles():
        assert needle not in dump, needle


def test_erasure_clears_sealed_values_and_blind_indexes(client, factory):
    cid = _write_markers(client, factory)
    r = client.delete(f"/api/v1/customers/{cid}", headers=factory.headers("admin"))
    assert r.status_code in (200, 204), r.get_json()
    db.session.rollback()
    row = db.session.execute(text(
        "SELECT birthday_sealed, birth_year, birth_month, birthday_index FROM customers "
        "WHERE id = :i"), {"i": cid}).one()
    assert tuple(row) == (None, None, None, None)
    assert db.session.scalar(text("SELECT count(*) FROM customer_identifiers "
                                  "WHERE customer_id = :i"), {"i": cid}) == 0
    assert db.session.execute(text("SELECT to_sealed, to_index, body_sealed FROM messages "
                                   "WHERE customer_id = :i"), {"i": cid}).one() == \
        (None, None, None)
    assert client.get("/api/v1/customers?phone=%2B12125550199",
                      headers=factory.headers("shop")).get_json()["items"] == []


def test_the_migration_seals_existing_rows(app, client, factory):
    with app.app_context():
        flask_migrate.downgrade(revision="0011")
        now = "2026-01-01 00:00:00.000000"
        db.session.execute(text(
            "INSERT INTO customers (id, first_name, birthday, consent_sms, consent_email, "
            "created_at, updated_at) VALUES (41, 'Old', '1987-03-14', true, false, :t, :t)"),
            {"t": now})
        db.session.execute(text(
            "INSERT INTO customer_identifiers (id, customer_id, kind, value, created_at) "
            "VALUES (1, 41, 'phone', '+12125550199', :t), "
            "(2, 41, 'email', 'zqmarker7431@example.com', :t), (3, 41, 'shop', 'W-41', :t)"),
            {"t": now})
        db.session.execute(text(
            "INSERT INTO messages (id, customer_id, to_number, body, purpose, status, "
            "attempts, next_attempt_at, created_at, updated_at) VALUES (5, 41, "
            "'+12125550199', 'ZQBODY7431', 'campaign', 'sent', 1, :t, :t, :t)"), {"t": now})
        db.session.commit()
        flask_migrate.upgrade()
        assert db.session.scalar(text("SELECT count(*) FROM customer_identifiers "
                                      "WHERE sealed LIKE '%zqmarker%' OR lookup LIKE '%zqmarker%' "
                                      "OR lookup LIKE '%5550199%'")) == 0
        # 0084 opened the sealed email for the blind index of its look-alike form
        assert db.session.scalar(text("SELECT alike FROM customer_identifiers WHERE id = 2")
                                 ) == identifier_alike("email", "zqmarker7431@example.com")
        db.session.commit()
    shop = factory.headers("shop")
    found = client.get("/api/v1/customers?phone=212-555-0199", headers=shop).get_json()
    assert [c["id"] for c in found["items"]] == [41]
    profile = client.get("/api/v1/customers/41", headers=shop).get_json()
    assert (profile["email"], profile["birthday"]) == ("zqmarker7431@example.com",
                                                       "1987-03-14")
    by_shop = client.get("/api/v1/customers?q=W-41", headers=shop).get_json()["items"]
    assert by_shop == [] or by_shop[0]["id"] == 41
    messages = client.get("/api/v1/messages?customer_id=41",
                          headers=factory.headers("marketing")).get_json()["items"]
    assert messages[0]["body"] == "ZQBODY7431"


def test_reencryption_runs_while_reads_and_writes_go_on(tmp_path, database_url):
    """A key ring in an instance file: rotate, re-encrypt in small batches while threads
    read and write through the API, then retire the old key."""
    app = create_app({"TESTING": True, "DATABASE_URL": database_url,
                      "INSTANCE_PATH": str(tmp_path), "PII_KEYS": None, "PII_INDEX_KEY": None,
                      "RATELIMIT_DEFAULT": "100000 per minute", "LOG_LEVEL": "WARNING"})
    runner = app.test_cli_runner()
    from tests.conftest import RequestClient
    from tests.factories import Factory

    app.test_client_class = RequestClient
    with app.app_context():
        headers = Factory(app).headers("shop")
    client = app.test_client()
    people = []
    for n in range(120):
        r = client.post("/api/v1/customers", headers=headers, json={
            "email": f"rot{n}@example.com", "phone": f"+1212555{n:04d}",
            "birthday": date(1980, 1 + n % 12, 1 + n % 28).isoformat()})
        assert r.status_code == 201, r.get_json()
        people.append(r.get_json()["id"])
    assert "k2" in runner.invoke(args=["security", "rotate-key"]).output
    refused = runner.invoke(args=["security", "retire-key", "k1"])
    assert refused.exit_code != 0 and "still sealed with k1" in refused.output

    errors: list[str] = []
    done = threading.Event()

    def reencrypt() -> None:
        try:
            with app.app_context():
                batches = sum(1 for _ in rekey.reencrypt(batch=7))
                assert batches > 20
        except Exception as e:
            errors.append(f"reencrypt: {e!r}")
        finally:
            done.set()

    def traffic(offset: int) -> None:
        client = app.test_client()
        n = offset
        while not done.is_set() or n < offset + 30:
            i = n % len(people)
            r = client.get(f"/api/v1/customers?phone=%2B1212555{i:04d}", headers=headers)
            if r.status_code != 200 or [c["id"] for c in r.get_json()["items"]] != [people[i]]:
                errors.append(f"read {i}: {r.status_code} {r.get_json()}")
            r = client.patch(f"/api/v1/customers/{people[i]}", headers=headers,
                             json={"email": f"rot{i}.{n}@example.com"})
            if r.status_code != 200:
                errors.append(f"write {i}: {r.status_code} {r.get_json()}")
            n += 1

    threads = [threading.Thread(target=reencrypt)] + [
        threading.Thread(target=traffic, args=(k * 1000,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert errors == []
    again = runner.invoke(args=["security", "reencrypt"])
    assert again.exit_code == 0 and "Every value is sealed with k2." in again.output
    retired = runner.invoke(args=["security", "retire-key", "k1"])
    assert retired.exit_code == 0, retired.output
    assert [k for k, _ in pii.parse_keys((tmp_path / pii.KEY_FILE).read_text())] == ["k2"]
    for n in (0, 57, 119):
        profile = client.get(f"/api/v1/customers/{people[n]}", headers=headers).get_json()
        assert profile["phone"] == f"+1212555{n:04d}"
        assert profile["birthday"] == date(1980, 1 + n % 12, 1 + n % 28).isoformat()
    with app.app_context():
        db.engine.dispose()


def test_the_till_finds_a_member_by_phone_or_card_in_one_indexed_read(app, till, factory):
    """A sale naming its member by phone or card sends as many statements as one naming
    the id: the member is found inside the claim, through the unique blind index."""
    c = factory.customer(phone="+12125550199", card_number="ZQCARD7431")
    till.buy({"id": c.id}, "10.00")
    with app.app_context():
        engine = db.engine
    counts = {}
    for name, ref in (("id", {"id": c.id}), ("phone", {"phone": "(212) 555-0199"}),
                      ("card", {"card_number": "zqcard7431"})):
        statements: list[str] = []

        def count(conn, cursor, statement, *args, statements=statements):
            statements.append(statement)

        event.listen(engine, "before_cursor_execute", count)
        try:
            r = till.buy(ref, "10.00")
        finally:
            event.remove(engine, "before_cursor_execute", count)
        assert r.get_json()["customer_id"] == c.id
        counts[name] = len(statements)
        if name != "id":
            assert not any("customer_identifiers" in s for s in statements
                           if "purchases" not in s), statements  # only inside the claim
    assert counts["phone"] == counts["id"] == counts["card"]
    db.session.execute(insert(CustomerIdentifier.__table__), [  # some rows for the planner
        identifier_row(10_000 + n, c.id, "phone", f"+1212556{n:04d}") for n in range(500)])
    db.session.commit()
    lookup = "SELECT customer_id FROM customer_identifiers WHERE kind = 'phone' AND lookup = 'x'"
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("ANALYZE customer_identifiers")
            plan = " ".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {lookup}"))
            assert "uq_customer_identifiers_kind_lookup" in plan, plan
        else:
            plan = " ".join(str(r[-1]) for r in conn.exec_driver_sql(
                f"EXPLAIN QUERY PLAN {lookup}"))
            assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, plan
            assert "(kind=? AND lookup=?)" in plan, plan
