from sqlalchemy import func, select

from crm.db import db
from crm.models import ApiKey, Customer, Store


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

    keys = dict(line.split() for line in second.output.splitlines()[1:])
    assert set(keys) == {"demo-admin", "demo-marketing", "demo-shop", "demo-pos-NYC01",
                         "demo-pos-SFO01"}
    r = client.get("/api/v1/customers?page_size=5",
                   headers={"Authorization": f"Bearer {keys['demo-shop']}"})
    assert r.status_code == 200 and len(r.json["items"]) == 5
    r = client.get("/api/v1/customers?page_size=5",  # a till lists no one
                   headers={"Authorization": f"Bearer {keys['demo-pos-NYC01']}"})
    assert r.status_code == 403
    old = dict(line.split() for line in first.output.splitlines()[1:])
    r = client.get("/api/v1/stores", headers={"Authorization": f"Bearer {old['demo-admin']}"})
    assert r.status_code == 401


def test_demo_members_have_points_tiers_and_coupons(runner, client, factory):
    out = runner.invoke(args=["demo", "--customers", "60"]).output
    keys = dict(line.split() for line in out.splitlines()[1:])
    pos = {"Authorization": f"Bearer {keys['demo-pos-NYC01']}"}
    points = client.get("/api/v1/customers/4/points", headers=pos).get_json()
    assert points["balance"] > 0 and points["tier"] is not None
    offers = client.get("/api/v1/offers",
                        headers={"Authorization": f"Bearer {keys['demo-marketing']}"})
    assert offers.get_json()["items"][0]["name"] == "Demo 10% off"
    assert runner.invoke(args=["loyalty", "verify"]).exit_code == 0
