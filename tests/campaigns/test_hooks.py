"""Outgoing webhooks, received by a local HTTP server and verified with the
``standardwebhooks`` package (a library we did not write), as receivers will."""

from __future__ import annotations

import json
import ssl
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
import requests
from sqlalchemy import event, func, select, update
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from campaigns import hook_addresses, hook_delivery, hooks
from campaigns.hook_models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from crm.db import db, utcnow
from crm.models import SecurityAlert
from tests.webhook_receiver import Receiver


@pytest.fixture
def receiver(app):
    """A local receiver, and the app allowed to send to it (WEBHOOK_ALLOW_PRIVATE)."""
    saved = app.config["WEBHOOK_ALLOW_PRIVATE"]
    app.config["WEBHOOK_ALLOW_PRIVATE"] = True
    server = Receiver().start()
    yield server
    server.stop()
    app.config["WEBHOOK_ALLOW_PRIVATE"] = saved


@pytest.fixture
def hook(client, admin, receiver):
    """make(event_types=["*"]): an endpoint at the receiver, as created (with secret)."""
    def make(event_types: list[str] | None = None, **extra: Any) -> dict[str, Any]:
        r = client.post("/api/v1/webhook-endpoints", headers=admin,
                        json={"url": receiver.url, "event_types": event_types or ["*"],
                              **extra})
        assert r.status_code == 201, r.get_json()
        return r.get_json()
    return make


def deliver(now=None) -> dict[str, int]:
    report = hook_delivery.deliver(now)
    db.session.rollback()
    return report


def bodies(receiver: Receiver) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in receiver.received]


def test_a_sale_reaches_the_endpoint_signed_and_verifiable(hook, till, factory, receiver):
    created = hook(["purchase.*", "customer.points.changed"])
    assert created["secret"].startswith("whsec_")
    member = factory.customer()
    sale = till.buy({"id": member.id}, "25.00").get_json()
    assert deliver()["succeeded"] == 2
    kinds = {b["type"]: b for b in bodies(receiver)}
    assert set(kinds) == {"purchase.recorded", "customer.points.changed"}
    data = kinds["purchase.recorded"]["data"]
    assert (data["purchase_id"], data["customer_id"], data["total"], data["currency"]) == \
        (sale["id"], member.id, "25.00", "EUR")
    points = kinds["customer.points.changed"]["data"]
    assert (points["delta"], points["cause"], points["balance_after"]) == (25, "purchase", 25)
    assert sorted(b["data"]["sequence"] for b in kinds.values()) == [1, 2]
    for received in receiver.received:
        assert received.path == "/hooks"
        assert "@" not in received.body and "person" not in received.body  # no email
        Webhook(created["secret"]).verify(received.body, received.headers)
        tampered = received.body.replace("25", "26", 1)
        with pytest.raises(WebhookVerificationError):
            Webhook(created["secret"]).verify(tampered, received.headers)
    assert "secret" not in till.client.get(
        f"/api/v1/webhook-endpoints/{created['id']}",
        headers=factory.headers("admin")).get_json()


def test_nothing_is_delivered_twice_and_other_types_are_not_sent(hook, till, factory,
                                                                 receiver):
    hook(["customer.tier.changed"])
    till.buy(None, "10.00")
    assert deliver() == {"requeued": 0}
    assert db.session.scalar(select(func.count()).select_from(WebhookEvent)) == 0
    assert receiver.received == []


def test_a_sale_with_no_subscriber_costs_no_statement(till, factory, app, hook):
    hook(["customer.tier.changed"])  # enabled, but not for sales or points
    member = factory.customer()
    till.buy({"id": member.id}, "5.00")  # the subscriptions are now cached
    seen: list[str] = []

    def count(_conn, _cursor, statement, *_):
        if "webhook" in statement:
            seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        till.buy({"id": member.id}, "6.00")
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert seen == []


def test_a_rolled_back_change_leaves_no_event(hook, factory):
    hook(["customer.created"])
    from crm import customers

    db.session.rollback()
    customers.create_customer({"first_name": "Gone", "email": "gone@example.com"})
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(WebhookEvent)) == 0
    factory.customer()
    assert [e.type for e in db.session.scalars(select(WebhookEvent))] == ["customer.created"]


def test_a_rotated_secret_verifies_with_both_keys_during_the_overlap(hook, client, admin,
                                                                     receiver):
    created = hook(["webhook.test"])
    rotated = client.post(f"/api/v1/webhook-endpoints/{created['id']}/rotate-secret",
                          headers=admin).get_json()
    assert rotated["secret"] != created["secret"]
    assert client.post(f"/api/v1/webhook-endpoints/{created['id']}/test",
                       headers=admin).status_code == 202
    deliver()
    [received] = receiver.received
    assert len(received.headers["webhook-signature"].split(" ")) == 2
    for secret in (created["secret"], rotated["secret"]):
        assert Webhook(secret).verify(received.body, received.headers)["type"] == "webhook.test"
    db.session.execute(update(WebhookEndpoint).values(previous_secret_until=utcnow()))
    db.session.commit()
    client.post(f"/api/v1/webhook-endpoints/{created['id']}/test", headers=admin)
    deliver()
    last = receiver.received[-1]
    Webhook(rotated["secret"]).verify(last.body, last.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(created["secret"]).verify(last.body, last.headers)


def test_retries_follow_the_schedule_with_one_id(hook, client, admin, receiver):
    created = hook(["webhook.test"])
    receiver.answer(500, 500, 200)
    client.post(f"/api/v1/webhook-endpoints/{created['id']}/test", headers=admin)
    t0 = utcnow()
    assert deliver(t0)["queued"] == 1
    assert deliver(t0 + timedelta(seconds=4)) == {"requeued": 0}  # not due yet
    assert deliver(t0 + timedelta(seconds=6))["queued"] == 1  # 5 s (+ jitter)
    assert deliver(t0 + timedelta(seconds=6, minutes=4)) == {"requeued": 0}
    assert deliver(t0 + timedelta(seconds=6, minutes=6))["succeeded"] == 1  # 5 min
    assert len(receiver.received) == 3 and len(set(receiver.ids())) == 1
    page = client.get(f"/api/v1/webhook-endpoints/{created['id']}/deliveries",
                      headers=admin).get_json()
    [delivery] = page["items"]
    assert (delivery["status"], delivery["attempts"]) == ("succeeded", 3)
    assert [a["status_code"] for a in delivery["history"]] == [500, 500, 200]
    assert delivery["history"][0]["response_head"] == "no thanks"
    assert all(a["duration_ms"] >= 0 for a in delivery["history"])
    assert deliver(t0 + timedelta(days=1)) == {"requeued": 0}
    assert len(receiver.received) == 3


def test_the_schedule_runs_out_and_recover_queues_again(hook, client, admin, receiver):
    created = hook(["webhook.test"])
    receiver.answer(*[503] * 10)
    client.post(f"/api/v1/webhook-endpoints/{created['id']}/test", headers=admin)
    now = utcnow()
    for wait in (0, *hook_delivery.SCHEDULE):
        now += timedelta(seconds=wait * 1.2)
        deliver(now)
    assert len(receiver.received) == 10
    [delivery] = client.get(f"/api/v1/webhook-endpoints/{created['id']}/deliveries"
                            "?status=failed", headers=admin).get_json()["items"]
    assert delivery["attempts"] == 10
    r = client.post(f"/api/v1/webhook-endpoints/{created['id']}/recover", headers=admin,
                    json={"since": (utcnow() - timedelta(hours=1)).isoformat()})
    assert r.get_json() == {"queued": 1}
    assert deliver(now)["succeeded"] == 1
    assert len(set(receiver.ids())) == 1


def test_410_disables_the_endpoint(hook, client, admin, receiver):
    created = hook(["webhook.test"])
    receiver.answer(410)
    client.post(f"/api/v1/webhook-endpoints/{created['id']}/test", headers=admin)
    assert deliver()["failed"] == 1
    endpoint = client.get(f"/api/v1/webhook-endpoints/{created['id']}", headers=admin)
    assert endpoint.get_json()["enabled"] is False
    assert "410" in endpoint.get_json()["disabled_reason"]
    client.post(f"/api/v1/webhook-endpoints/{created['id']}/test", headers=admin)
    deliver()
    assert len(receiver.received) == 1  # a disabled endpoint is sent nothing


def test_a_redirect_is_a_failure_and_is_not_followed(hook, client, admin, receiver):
    created = hook(["webhook.test"])
    receiver.answer(302)
    client.post(f"/api/v1/webhook-endpoints/{created['id']}/test", headers=admin)
    assert deliver()["queued"] == 1
    assert [r.path for r in receiver.received] == ["/hooks"]  # never /elsewhere
    delivery = db.session.scalar(select(WebhookDelivery))
    assert (delivery.status, delivery.last_status_code) == ("queued", 302)


def test_resend_keeps_the_id(hook, client, admin, receiver):
    created = hook(["webhook.test"])
    client.post(f"/api/v1/webhook-endpoints/{created['id']}/test", headers=admin)
    deliver()
    delivery_id = db.session.scalar(select(WebhookDelivery.id))
    r = client.post(f"/api/v1/webhook-deliveries/{delivery_id}/resend", headers=admin)
    assert r.status_code == 202 and r.get_json()["status"] == "queued"
    deliver()
    assert len(receiver.received) == 2 and len(set(receiver.ids())) == 1
    Webhook(created["secret"]).verify(receiver.received[1].body, receiver.received[1].headers)


def test_two_schedulers_never_deliver_one_row_twice(hook, app, client, admin, receiver):
    created = hook(["webhook.test"])
    for _ in range(60):
        client.post(f"/api/v1/webhook-endpoints/{created['id']}/test", headers=admin)
    app.config["WEBHOOK_BATCH_SIZE"] = 7
    start = threading.Barrier(2)

    def scheduler() -> dict[str, int]:
        with app.app_context():
            start.wait()
            return hook_delivery.deliver()

    try:
        with ThreadPoolExecutor(2) as pool:
            reports = list(pool.map(lambda _: scheduler(), range(2)))
    finally:
        app.config["WEBHOOK_BATCH_SIZE"] = 200
    assert sum(r.get("succeeded", 0) for r in reports) == 60
    assert len(receiver.received) == 60 and len(set(receiver.ids())) == 60


def test_a_scheduler_killed_mid_batch_loses_nothing(hook, app, client, admin, receiver):
    created = hook(["webhook.test"])
    client.post(f"/api/v1/webhook-endpoints/{created['id']}/test", headers=admin)
    db.session.rollback()
    hook_delivery.claim(utcnow(), 10)  # claimed and committed, then the process died
    db.session.commit()
    assert deliver() == {"requeued": 0}  # a live claim is left alone
    later = utcnow() + timedelta(seconds=app.config["WEBHOOK_CLAIM_TIMEOUT_SECONDS"] + 1)
    report = deliver(later)
    assert (report["requeued"], report["succeeded"]) == (1, 1)
    assert len(receiver.received) == 1


def test_five_days_of_failures_disable_the_endpoint_with_an_alert(hook, client, admin,
                                                                  receiver):
    created = hook(["webhook.test"])
    receiver.answer(*[500] * 50)
    now = utcnow() + timedelta(seconds=1)
    for day in range(6):
        client.post(f"/api/v1/webhook-endpoints/{created['id']}/test", headers=admin)
        deliver(now + timedelta(days=day))
    endpoint = db.session.get(WebhookEndpoint, created["id"])
    assert endpoint.enabled is False and "5 days" in endpoint.disabled_reason
    [alert] = db.session.scalars(select(SecurityAlert))
    assert (alert.rule, alert.subject) == ("webhook_endpoint_disabled",
                                           f"webhook-endpoint:{created['id']}")


def test_security_alerts_are_events_too(hook, receiver):
    hook(["security.alert"])
    from crm.alerts import raise_alert

    db.session.rollback()
    raise_alert("test_rule", "customer:1", "Something odd.")
    db.session.commit()
    deliver()
    [body] = bodies(receiver)
    assert body["type"] == "security.alert" and body["data"]["rule"] == "test_rule"


def test_sequences_per_customer_hold_under_concurrent_sales(hook, till, factory,
                                                            live_server):
    hook(["purchase.recorded"])
    member = factory.customer()

    def buy(n: int) -> int:
        r = requests.post(f"{live_server}/api/v1/purchases", headers=till.headers, json={
            "receipt_id": f"C{n}", "occurred_at": utcnow().isoformat(), "currency": "EUR",
            "total": "3.00", "customer": {"id": member.id},
            "lines": [{"sku": "A", "quantity": 1, "unit_price": "3.00"}]}, timeout=30)
        return r.status_code

    with ThreadPoolExecutor(6) as pool:
        assert Counter(pool.map(buy, range(12))) == {201: 12}
    db.session.rollback()
    rows = db.session.execute(select(WebhookEvent.id, WebhookEvent.sequence)
                              .order_by(WebhookEvent.id)).all()
    assert [seq for _, seq in rows] == list(range(1, 13))  # in commit order, no gap


def test_event_types_are_checked(client, admin, receiver):
    r = client.post("/api/v1/webhook-endpoints", headers=admin,
                    json={"url": receiver.url, "event_types": ["purchase.made"]})
    assert r.status_code == 422 and "purchase.made" in r.get_json()["detail"]
    for types in (["purchase.*"], ["*"], ["customer.points.changed"]):
        r = client.post("/api/v1/webhook-endpoints", headers=admin,
                        json={"url": receiver.url, "event_types": types})
        assert r.status_code == 201


def test_only_admins_manage_endpoints(client, factory, receiver):
    r = client.get("/api/v1/webhook-endpoints", headers=factory.headers("marketing"))
    assert r.status_code == 403


REFUSED = [
    ("http://93.184.215.14/hook", "https"),
    ("https://127.0.0.1/hook", "loopback"),
    ("https://localhost/hook", "loopback"),
    ("https://10.1.2.3/hook", "private"),
    ("https://192.168.0.10/hook", "private"),
    ("https://172.16.5.4/hook", "private"),
    ("https://169.254.169.254/latest/meta-data", "link-local"),
    ("https://100.64.0.1/hook", "CGNAT"),
    ("https://224.0.0.1/hook", "multicast"),
    ("https://0.0.0.0/hook", "unspecified"),
    ("https://[::1]/hook", "loopback"),
    ("https://[::ffff:127.0.0.1]/hook", "inside the IPv6"),
    ("https://[::ffff:169.254.169.254]/hook", "link-local"),
    ("https://[fe80::1]/hook", "link-local"),
    ("https://[fc00::1]/hook", "private"),
    ("https://2130706433/hook", "non-standard"),
    ("https://0177.0.0.1/hook", "non-standard"),
    ("https://0x7f.0.0.1/hook", "non-standard"),
    ("https://0x7f000001/hook", "non-standard"),
    ("https://user:pw@93.184.215.14/hook", "password"),
    ("ftp://93.184.215.14/hook", "https"),
]


@pytest.mark.parametrize(("url", "why"), REFUSED)
def test_private_and_odd_addresses_are_refused_at_registration(client, admin, url, why):
    r = client.post("/api/v1/webhook-endpoints", headers=admin,
                    json={"url": url, "event_types": ["*"]})
    assert r.status_code == 422, r.get_json()
    assert why in r.get_json()["detail"]
    assert r.headers["Content-Type"] == "application/problem+json"


def test_a_public_address_is_accepted(client, admin):
    r = client.post("/api/v1/webhook-endpoints", headers=admin,
                    json={"url": "https://93.184.215.14/hook", "event_types": ["*"]})
    assert r.status_code == 201


def test_every_send_checks_the_address_it_connects_to(hook, app, client, admin, receiver):
    created = hook(["webhook.test"])  # registered while private addresses were allowed
    client.post(f"/api/v1/webhook-endpoints/{created['id']}/test", headers=admin)
    app.config["WEBHOOK_ALLOW_PRIVATE"] = False
    assert deliver()["queued"] == 1
    assert receiver.received == []
    delivery = db.session.scalar(select(WebhookDelivery))
    assert delivery.last_error.startswith("refused") and delivery.last_status_code is None


def test_a_host_that_resolves_to_a_private_address_is_refused_at_send(app):
    with app.app_context():
        with pytest.raises(hook_addresses.Refused, match="loopback"):
            hook_addresses.resolve_with("https://localhost:8443/x", False)
        target = hook_addresses.resolve_with("http://localhost:8443/x", True)
        assert "127.0.0.1" in target.addresses or "::1" in target.addresses


def test_history_is_pruned_after_the_retention(hook, client, admin, receiver, app):
    created = hook(["webhook.test"])
    client.post(f"/api/v1/webhook-endpoints/{created['id']}/test", headers=admin)
    deliver()
    later = utcnow() + timedelta(days=app.config["WEBHOOK_RETENTION_DAYS"] + 1)
    assert hook_delivery.prune(utcnow()) == 0
    assert hook_delivery.prune(later) == 1
    db.session.commit()
    assert db.session.scalar(select(func.count()).select_from(WebhookDelivery)) == 0
    hooks.forget()


def test_each_kind_of_change_is_an_event_with_ids_only(hook, client, till, factory, admin,
                                                       receiver):
    created = hook(["*"])
    marketing = factory.headers("marketing")
    r = client.post("/api/v1/loyalty/tiers", headers=admin,
                    json={"name": "Gold", "threshold_points": 10})
    assert r.status_code == 201, r.get_json()
    offer = client.post("/api/v1/offers", headers=marketing, json={
        "name": "Five off", "kind": "amount", "value": "5.00"}).get_json()
    [code] = client.post(f"/api/v1/offers/{offer['id']}/coupons", headers=marketing,
                         json={"count": 1}).get_json()["codes"]
    person = client.post("/api/v1/customers", headers=till.headers, json={
        "email": "events@example.com", "phone": "+14155550123",
        "consent": {"sms": True}}).get_json()
    sale = till.buy({"id": person["id"]}, "30.00", coupon_codes=[code]).get_json()
    till.give_back(sale["id"], amount="25.00")
    other = factory.customer(email="other-events@example.com")
    assert client.post(f"/api/v1/customers/{person['id']}/merge", headers=admin, json={
        "source_customer_id": other.id}).status_code == 200
    assert client.post(f"/api/v1/customers/{person['id']}/unmerge", headers=admin, json={
        "source_customer_id": other.id}).status_code == 200
    assert client.delete(f"/api/v1/customers/{other.id}", headers=admin).status_code == 200
    deliver()
    types = Counter(b["type"] for b in bodies(receiver))
    for kind in ("customer.created", "customer.consent.changed", "purchase.recorded",
                 "customer.points.changed", "coupon.redeemed", "customer.tier.changed",
                 "purchase.returned", "customer.merged", "customer.unmerged",
                 "customer.erased"):
        assert types[kind] >= 1, (kind, types)
    for received in receiver.received:
        Webhook(created["secret"]).verify(received.body, received.headers)
        for personal in ("events@example.com", "4155550123", "other-events"):
            assert personal not in received.body
    mine = [b["data"]["sequence"] for b in bodies(receiver)
            if b["data"].get("customer_id") == person["id"]]
    assert sorted(mine) == list(range(1, len(mine) + 1))
    returned = next(b for b in bodies(receiver) if b["type"] == "purchase.returned")
    assert (returned["data"]["purchase_id"], returned["data"]["returned"]) == \
        (sale["id"], "25.00")


def test_survey_answers_and_referrals_are_events(hook, client, till, factory, admin,
                                                 receiver):
    from campaigns import surveys
    from campaigns.models import SurveyInvitation

    hook(["survey.answered", "referral.*"])
    client.put("/api/v1/loyalty/referral-program", headers=admin, json={
        "enabled": True, "referrer_points": 10, "friend_points": 5})
    assert client.post("/api/v1/surveys", headers=factory.headers("marketing"), json={
        "name": "After purchase", "kind": "nps", "question": "Recommend us?"}
    ).status_code == 201
    referrer = factory.customer()
    code = client.get(f"/api/v1/customers/{referrer.id}/referral",
                      headers=till.headers).get_json()["code"]
    friend = client.post("/api/v1/customers", headers=till.headers, json={
        "email": "friend-events@example.com", "phone": "+14155550199",
        "consent": {"sms": True}, "referral_code": code}).get_json()
    till.buy({"id": friend["id"]}, "10.00")
    db.session.rollback()
    surveys.dispatch(utcnow() + timedelta(hours=3))
    db.session.commit()
    invitation = db.session.scalar(select(SurveyInvitation.id))
    surveys.answer(invitation, 9, "Lovely", "web")
    db.session.commit()
    deliver()
    by_type = {b["type"]: b["data"] for b in bodies(receiver)}
    assert set(by_type) == {"referral.qualified", "referral.rewarded", "survey.answered"}
    assert by_type["referral.rewarded"]["customer_id"] == referrer.id
    assert (by_type["referral.rewarded"]["friend_id"],
            by_type["referral.rewarded"]["referrer_points"]) == (friend["id"], 10)


def test_deleting_an_endpoint_drops_its_deliveries(hook, client, admin):
    created = hook(["webhook.test"])
    client.post(f"/api/v1/webhook-endpoints/{created['id']}/test", headers=admin)
    assert client.delete(f"/api/v1/webhook-endpoints/{created['id']}",
                         headers=admin).status_code == 204
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(WebhookDelivery)) == 0
    assert client.get(f"/api/v1/webhook-endpoints/{created['id']}",
                      headers=admin).status_code == 404


def test_https_goes_to_the_checked_address_with_the_names_host_and_tls_name(
        app, client, admin, tmp_path):
    """The URL names a host; the sender connects to the address it checked and still
    presents that name (Host header, TLS server name), and verifies the certificate."""
    import trustme

    authority = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(context)
    server = Receiver()
    server.use_tls(context)
    server.start()
    ca_file = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    saved = {name: app.config[name] for name in ("WEBHOOK_ALLOW_PRIVATE", "WEBHOOK_CA_FILE")}
    app.config.update(WEBHOOK_ALLOW_PRIVATE=True, WEBHOOK_CA_FILE=str(ca_file))
    try:
        url = f"https://localhost:{server.server.server_port}/hooks?from=crm"
        created = client.post("/api/v1/webhook-endpoints", headers=admin, json={
            "url": url, "event_types": ["webhook.test"]}).get_json()
        client.post(f"/api/v1/webhook-endpoints/{created['id']}/test", headers=admin)
        assert deliver()["succeeded"] == 1
        [received] = server.received
        assert received.path == "/hooks?from=crm"
        assert received.headers["host"] == f"localhost:{server.server.server_port}"
        Webhook(created["secret"]).verify(received.body, received.headers)
        app.config["WEBHOOK_CA_FILE"] = ""  # a certificate nobody trusts: no delivery
        client.post(f"/api/v1/webhook-endpoints/{created['id']}/test", headers=admin)
        assert deliver()["queued"] == 1
        assert "CERTIFICATE_VERIFY_FAILED" in db.session.scalar(
            select(WebhookDelivery.last_error).where(WebhookDelivery.status == "queued"))
    finally:
        app.config.update(saved)
        server.stop()
