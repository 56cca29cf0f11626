import time

from sqlalchemy import func, select, text

from crm.db import db
from crm.models import ApiKey, Customer, Store


def _keys(output):
    """The demo key lines ("  name  key"); other sections follow them."""
    return dict(line.split() for line in output.splitlines()[1:]
                if line.strip().startswith("demo-"))


def test_demo_loads_once_and_prints_working_keys(runner, client, factory):
    first = runner.invoke(args=["demo", "--customers", "50"])
    assert first.exit_code == 0, first.output
    second = runner.invoke(args=["demo", "--customers", "50"])
    assert second.exit_code == 0, second.output
    assert db.session.scalar(select(func.count()).select_from(Customer)) == 50
    assert db.session.scalar(select(func.count()).select_from(Store)) == 3
    active = db.session.scalar(select(func.count()).select_from(ApiKey)
                               .where(ApiKey.revoked_at.is_(None)))
    assert active == 5

    keys = _keys(second.output)
    assert set(keys) == {"demo-admin", "demo-marketing", "demo-shop", "demo-pos-NYC01",
                         "demo-pos-SFO01"}
    r = client.get("/api/v1/customers?page_size=5",
                   headers={"Authorization": f"Bearer {keys['demo-shop']}"})
    assert r.status_code == 200 and len(r.json["items"]) == 5
    r = client.get("/api/v1/customers?page_size=5",  # a till lists no one
                   headers={"Authorization": f"Bearer {keys['demo-pos-NYC01']}"})
    assert r.status_code == 403
    old = _keys(first.output)
    r = client.get("/api/v1/stores", headers={"Authorization": f"Bearer {old['demo-admin']}"})
    assert r.status_code == 401


def test_demo_members_have_points_tiers_and_coupons(runner, client, factory):
    out = runner.invoke(args=["demo", "--customers", "60"]).output
    keys = _keys(out)
    pos = {"Authorization": f"Bearer {keys['demo-pos-NYC01']}"}
    points = client.get("/api/v1/customers/4/points", headers=pos).get_json()
    assert points["balance"] > 0 and points["tier"] is not None
    offers = client.get("/api/v1/offers",
                        headers={"Authorization": f"Bearer {keys['demo-marketing']}"})
    assert offers.get_json()["items"][0]["name"] == "Demo 10% off"
    assert runner.invoke(args=["loyalty", "verify"]).exit_code == 0


def test_demo_leaves_planner_statistics(runner, factory):
    """`flask demo` ends with ANALYZE, so the first segment counts are planned on the
    real row counts, not on an empty table's."""
    started = db.session.scalar(select(func.now())) if db.engine.dialect.name != "sqlite" \
        else None
    if started is None:
        db.session.execute(text("ANALYZE"))  # makes sqlite_stat1, then empty it
        db.session.execute(text("DELETE FROM sqlite_stat1"))
    db.session.commit()
    assert runner.invoke(args=["demo", "--customers", "40"]).exit_code == 0
    if started is None:
        tables = set(db.session.scalars(text("SELECT tbl FROM sqlite_stat1")))
        assert {"customers", "purchases", "customer_identifiers"} <= tables
        return
    for _ in range(100):  # another backend's statistics are flushed within a second or so
        db.session.rollback()
        db.session.execute(text("SELECT pg_stat_clear_snapshot()"))
        analyzed = dict(db.session.execute(text(
            "SELECT relname, last_analyze FROM pg_stat_user_tables "
            "WHERE relname IN ('customers', 'purchases')")).all())
        if all(analyzed.get(t) and analyzed[t] >= started for t in ("customers", "purchases")):
            return
        time.sleep(0.1)
    raise AssertionError(f"not analyzed since {started}: {analyzed}")
