"""The referral program through the API: codes and the share page, attribution on
sign-up and sync, qualification by the first purchase, rewards after the hold (once),
reversals on return and merge, fraud rules and the report."""

from __future__ import annotations

import itertools
import re
import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from crm.db import db, utcnow
from crm.models import SecurityAlert
from loyalty import referrals, settings
from loyalty.coupons import ALPHABET
from loyalty.models import LedgerEntry
from loyalty.referral_models import Referral

_people = itertools.count(1)


@pytest.fixture
def shop(factory) -> dict[str, str]:
    return factory.headers("shop")


@pytest.fixture
def referral_program(client, admin, program):
    """set(**changes): the referral program on, 100 points to the referrer and 50 to the
    friend, a first purchase of at least 20.00."""
    def configure(**changes: Any) -> dict[str, Any]:
        body = {"enabled": True, "referrer_points": 100, "friend_points": 50,
                "min_first_purchase": "20.00", "qualify_days": 30, **changes}
        r = client.put("/api/v1/loyalty/referral-program", headers=admin, json=body)
        assert r.status_code == 200, r.get_json()
        return r.get_json()
    configure()
    return configure


def code_of(client, headers, customer_id: int) -> str:
    r = client.get(f"/api/v1/customers/{customer_id}/referral", headers=headers)
    assert r.status_code == 200, r.get_json()
    return r.get_json()["code"]


def sign_up(client, headers, code: str | None, status: int = 201, **fields: Any) -> Any:
    n = next(_people)
    body = {"email": f"friend{n}@example.org", "first_name": "Friend", **fields}
    if code is not None:
        body["referral_code"] = code
    r = client.post("/api/v1/customers", headers=headers, json=body)
    assert r.status_code == status, r.get_json()
    return r.get_json()


def referral_of(friend_id: int) -> Referral | None:
    db.session.rollback()
    return db.session.scalar(select(Referral).where(Referral.friend_id == friend_id))


def referral_rows(customer_id: int) -> list[tuple[str, int]]:
    db.session.rollback()
    return [(e.kind, e.points) for e in db.session.scalars(
        select(LedgerEntry).where(LedgerEntry.customer_id == customer_id,
                                  LedgerEntry.cause == "referral").order_by(LedgerEntry.id))]


def test_the_program_is_admin_only(client, admin, factory, referral_program):
    body = client.get("/api/v1/loyalty/referral-program", headers=admin).get_json()
    assert (body["enabled"], body["min_first_purchase"], body["qualify_days"]) == \
        (True, "20.00", 30)
    r = client.put("/api/v1/loyalty/referral-program", headers=factory.headers("marketing"),
                   json={"enabled": False})
    assert r.status_code == 403
    r = client.put("/api/v1/loyalty/referral-program", headers=admin,
                   json={"enabled": True, "friend_offer_id": 999})
    assert r.status_code == 404


def test_each_member_gets_one_random_code_and_a_share_page(client, factory, till, shop):
    member = factory.customer()
    r = client.get(f"/api/v1/customers/{member.id}/referral", headers=till.headers)
    body = r.get_json()
    assert re.fullmatch(f"[{ALPHABET}]{{8}}", body["code"])
    assert body["url"].endswith(f"/r/{body['code']}")
    assert body["qr_svg_url"].endswith(f"/r/{body['code']}/qr.svg")
    assert code_of(client, shop, member.id) == body["code"]  # the same code every time
    other = factory.customer()
    assert code_of(client, shop, other.id) != body["code"]
    page = client.get(f"/r/{body['code'].lower()}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and page.mimetype == "text/html"
    for tag in ("og:title", "og:description", "og:image", "og:url"):
        assert f'property="{tag}"' in html
    assert body["code"] in html and member.email not in html
    svg = client.get(f"/r/{body['code']}/qr.svg")
    assert svg.mimetype == "image/svg+xml" and b"<svg" in svg.data
    png = client.get(f"/r/{body['code']}/qr.png")
    assert png.mimetype == "image/png" and png.data.startswith(b"\x89PNG")
    assert client.get("/r/NOSUCHCD").status_code == 404
    assert client.get(f"/api/v1/customers/{member.id}/referral",
                      headers=factory.headers("marketing")).status_code == 403


def test_a_new_customer_with_a_code_is_attributed(client, factory, shop, referral_program):
    referrer = factory.customer()
    code = code_of(client, shop, referrer.id)
    friend = sign_up(client, shop, code)
    referral = referral_of(friend["id"])
    assert (referral.referrer_id, referral.status, referral.reason) == \
        (referrer.id, "attributed", None)
    r = client.get(f"/api/v1/referrals?referrer_id={referrer.id}",
                   headers=factory.headers("marketing"))
    assert [(i["friend_id"], i["status"]) for i in r.get_json()["items"]] == \
        [(friend["id"], "attributed")]


def test_an_unusable_code_is_a_422_unless_optional(client, factory, shop, referral_program):
    db.session.rollback()
    before = db.session.scalar(select(func.count()).select_from(Referral))
    r = client.post("/api/v1/customers", headers=shop,
                    json={"email": "x1@example.org", "referral_code": "ZZZZZZZZ"})
    assert r.status_code == 422 and "ZZZZZZZZ" in r.get_json()["detail"]
    assert "referral_code" in r.get_json()["errors"]
    created = sign_up(client, shop, "ZZZZZZZZ", referral_optional=True)
    assert referral_of(created["id"]) is None
    assert db.session.scalar(select(func.count()).select_from(Referral)) == before
    r = client.get("/api/v1/customers?email=x1@example.org", headers=shop)
    assert r.get_json()["items"] == []  # the refused sign-up wrote nothing
    referral_program(enabled=False)
    referrer = factory.customer()
    sign_up(client, shop, code_of(client, shop, referrer.id), status=422)


def test_the_first_qualifying_purchase_rewards_both_at_once_without_hold(
        client, factory, shop, till, referral_program):
    referrer = factory.customer()
    friend = sign_up(client, shop, code_of(client, shop, referrer.id))
    till.buy({"id": friend["id"]}, "10.00")  # below the minimum: not yet
    assert referral_of(friend["id"]).status == "attributed"
    till.buy({"id": friend["id"]}, "25.00")
    referral = referral_of(friend["id"])
    assert (referral.status, referral.referrer_points, referral.friend_points) == \
        ("rewarded", 100, 50)
    assert referral_rows(referrer.id) == [("adjust", 100)]
    assert referral_rows(friend["id"]) == [("adjust", 50)]
    assert till.points(friend["id"])["balance"] == 10 + 25 + 50
    till.buy({"id": friend["id"]}, "40.00")
    assert referral_rows(referrer.id) == [("adjust", 100)]  # once
    assert referrals.reward_due() == {"rewarded": 0}


def test_a_purchase_after_the_window_does_not_qualify(client, factory, shop, till,
                                                      referral_program):
    referrer = factory.customer()
    friend = sign_up(client, shop, code_of(client, shop, referrer.id))
    db.session.execute(update(Referral).values(created_at=utcnow() - timedelta(days=31)))
    db.session.commit()
    till.buy({"id": friend["id"]}, "30.00")
    assert referral_of(friend["id"]).status == "attributed"


def test_rewards_wait_for_the_hold_and_are_written_once(client, factory, shop, till,
                                                        referral_program):
    settings.update_program({"pending_days": 14})
    db.session.commit()
    referrer = factory.customer()
    friend = sign_up(client, shop, code_of(client, shop, referrer.id))
    till.buy({"id": friend["id"]}, "30.00")
    referral = referral_of(friend["id"])
    assert referral.status == "qualified" and referral_rows(referrer.id) == []
    assert referrals.reward_due() == {"rewarded": 0}  # the hold is not over
    db.session.rollback()
    later = utcnow() + timedelta(days=15)
    results: list[dict[str, int]] = []

    def job() -> None:
        with client.application.app_context():
            results.append(referrals.reward_due(later))
            db.session.commit()

    runs = [threading.Thread(target=job) for _ in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    assert sorted(r["rewarded"] for r in results) == [0, 1]
    db.session.rollback()
    assert referrals.reward_due(later) == {"rewarded": 0}
    db.session.commit()
    assert referral_rows(referrer.id) == [("adjust", 100)]
    assert referral_rows(friend["id"]) == [("adjust", 50)]
    assert referral_of(friend["id"]).status == "rewarded"


def test_a_return_during_the_hold_cancels_and_after_it_claws_back(client, factory, shop,
                                                                  till, referral_program):
    settings.update_program({"pending_days": 14})
    db.session.commit()
    referrer = factory.customer()
    friend = sign_up(client, shop, code_of(client, shop, referrer.id))
    sale = till.buy({"id": friend["id"]}, "30.00").get_json()
    till.give_back(sale["id"], amount="30.00")
    referral = referral_of(friend["id"])
    assert (referral.status, referral.reason) == ("reversed", "returned")
    assert referral_rows(referrer.id) == []
    # after the hold: rewarded, then the return takes both rewards back
    settings.update_program({"pending_days": 0})
    db.session.commit()
    other = sign_up(client, shop, code_of(client, shop, referrer.id))
    sale = till.buy({"id": other["id"]}, "30.00").get_json()
    assert referral_of(other["id"]).status == "rewarded"
    till.give_back(sale["id"], amount="30.00")
    assert (referral_of(other["id"]).status, referral_of(other["id"]).reason) == \
        ("reversed", "returned")
    assert referral_rows(referrer.id) == [("adjust", 100), ("reverse", -100)]
    assert referral_rows(other["id"]) == [("adjust", 50), ("reverse", -50)]
    assert till.points(referrer.id)["balance"] == 0


def test_a_friend_sharing_a_mailbox_with_the_referrer_is_rejected(client, factory, shop,
                                                                  referral_program):
    referrer = factory.customer(email="ann.lee@gmail.com")
    friend = sign_up(client, shop, code_of(client, shop, referrer.id),
                     email="annlee+friend@gmail.com")
    referral = referral_of(friend["id"])
    assert (referral.status, referral.reason) == ("rejected", "shared_identifier")


def test_many_friends_from_one_mailbox_raise_an_alert(client, factory, shop,
                                                      referral_program):
    referrer = factory.customer()
    code = code_of(client, shop, referrer.id)
    for tag in ("a", "b", "c"):
        sign_up(client, shop, code, email=f"bulk+{tag}@example.net")
    db.session.rollback()
    [alert] = db.session.scalars(select(SecurityAlert))
    assert (alert.rule, alert.subject) == ("referral_shared_address", f"referrer:{referrer.id}")
    assert "example.net" not in alert.detail


def test_a_ring_is_rejected_with_an_alert(client, factory, shop, referral_program):
    first = factory.customer(email="ring.owner@example.com")
    second = sign_up(client, shop, code_of(client, shop, first.id))
    third = sign_up(client, shop, code_of(client, shop, second["id"]),
                    email="ring.owner+again@example.com")  # the first one again
    referral = referral_of(third["id"])
    assert (referral.status, referral.reason) == ("rejected", "ring")
    assert db.session.scalar(select(SecurityAlert.rule)) == "referral_ring"


def test_caps_per_referrer(client, factory, shop, till, referral_program):
    referral_program(max_per_referrer=1)
    referrer = factory.customer()
    code = code_of(client, shop, referrer.id)
    friends = [sign_up(client, shop, code) for _ in range(2)]
    for friend in friends:
        till.buy({"id": friend["id"]}, "30.00")
    assert [(referral_of(f["id"]).status, referral_of(f["id"]).reason) for f in friends] == \
        [("rewarded", None), ("capped", "cap_total")]
    assert referral_rows(referrer.id) == [("adjust", 100)]


def test_merging_referrer_and_friend_reverses_the_rewards(client, factory, shop, till,
                                                          admin, referral_program):
    referrer = factory.customer()
    friend = sign_up(client, shop, code_of(client, shop, referrer.id))
    till.buy({"id": friend["id"]}, "30.00")
    r = client.post(f"/api/v1/customers/{referrer.id}/merge", headers=admin,
                    json={"source_customer_id": friend["id"]})
    assert r.status_code == 200, r.get_json()
    referral = referral_of(friend["id"])
    assert (referral.status, referral.reason) == ("reversed", "merged")
    assert till.points(referrer.id)["balance"] == 30  # the sale's points, no rewards


def test_sync_attributes_new_members_and_rejects_existing_ones(client, factory, shop,
                                                               referral_program):
    referrer = factory.customer()
    code = code_of(client, shop, referrer.id)
    known = factory.customer(email="known@example.org")
    now = utcnow().isoformat()
    r = client.post("/api/v1/customers/sync", headers=shop, json={"customers": [
        {"external_id": "S1", "updated_at": now, "email": "s1@example.org",
         "referral_code": code},
        {"external_id": "S2", "updated_at": now, "email": "known@example.org",
         "referral_code": code},
        {"external_id": "S3", "updated_at": now, "email": "s3@example.org",
         "referral_code": "NOPE2345"},
        {"external_id": "S4", "updated_at": now, "email": "s4@example.org",
         "referral_code": "NOPE2345", "referral_optional": True},
    ]})
    results = r.get_json()["results"]
    assert [x["result"] for x in results] == ["created", "matched", "invalid", "created"]
    assert "referral_code" in results[2]["detail"]
    assert referral_of(results[0]["customer_id"]).status == "attributed"
    assert (referral_of(known.id).status, referral_of(known.id).reason) == \
        ("rejected", "existing_customer")
    assert referral_of(results[3]["customer_id"]) is None


def test_the_report(client, factory, shop, till, referral_program):
    referrer = factory.customer(email="rep.owner@example.com")
    code = code_of(client, shop, referrer.id)
    buyer = sign_up(client, shop, code)
    sign_up(client, shop, code)  # attributed, never buys
    sign_up(client, shop, code, email="rep.owner+x@example.com")  # rejected
    till.buy({"id": buyer["id"]}, "30.00")
    till.buy({"id": buyer["id"]}, "12.50")
    report = client.get("/api/v1/loyalty/referral-program/report",
                        headers=factory.headers("marketing")).get_json()
    assert report == {
        "codes_shared": 1, "attributed": 2, "qualified": 1, "rewarded": 1, "rejected": 1,
        "capped": 0, "reversed": 0, "rejected_by_reason": {"shared_identifier": 1},
        "points_given": 150, "revenue_first_90_days": "42.50", "currency": "EUR",
        "k_factor": 1.0}
