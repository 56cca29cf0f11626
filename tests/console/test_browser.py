"""The console in a real browser: every screen signed in as each role, with axe-core
and a screenshot (see conftest)."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import expect
from sqlalchemy import select

from console.models import User
from crm.db import db
from crm.models import Customer, CustomerIdentifier, Store, identifier_lookup
from loyalty import points, settings
from loyalty.models import LedgerEntry, Offer, Purchase, Tier
from tests.console.conftest import fresh


def _demo_customer(phone_digits: str = "+12125550004") -> Customer:
    fresh()
    return db.session.scalar(select(Customer).join(CustomerIdentifier).where(
        CustomerIdentifier.kind == "phone",
        CustomerIdentifier.lookup == identifier_lookup("phone", phone_digits)))


def test_sign_in_dashboard_and_the_same_answer_for_unknown_and_wrong(demo, screen):
    s = screen()
    s.go("/")
    assert s.page.url.endswith("/console/login?next=/console/")
    s.check("login")
    s.sign_in("nobody@demo.example.com")
    unknown = s.page.locator("#login-error").inner_text()
    s.sign_in("admin@demo.example.com", "a wrong password!")
    assert s.page.locator("#login-error").inner_text() == unknown
    s.check("login-failed")
    s.sign_in("admin@demo.example.com")
    assert s.page.url.endswith("/console/")
    assert s.page.locator("#fig-members").inner_text() == "40"
    # The charts' figures are in tables beside them.
    assert s.page.locator("#sales-table tbody tr").count() == 90
    assert s.page.locator("#tiers-table").inner_text().startswith("Tier")
    s.check("dashboard")
    tablet = screen("viewer", viewport={"width": 768, "height": 1024})
    assert tablet.page.locator("#fig-members").inner_text() == "40"
    tablet.check("dashboard-tablet")


def test_search_by_phone_written_differently_then_the_360_view_and_an_adjustment(demo, screen):
    member = _demo_customer()
    balance = points.summary(member.id)["balance"]
    s = screen("admin")
    s.go("/console/customers")
    s.check("customers")
    s.page.get_by_label("Search by name, email, phone or card").fill("(212) 555 0004")
    s.page.get_by_role("button", name="Search").click()
    expect(s.page.locator("#customer-results tbody tr")).to_have_count(1)
    link = s.page.locator("#customer-results a").first
    s.check("customer-search")
    link.click()
    s.page.wait_for_url(re.compile(rf"/console/customers/{member.id}$"))
    assert s.page.locator("#balance").inner_text() == f"{balance:,}"
    assert s.page.locator("#purchases tbody tr").count() >= 1
    s.check("customer-360")

    s.page.locator("summary", has_text="Adjust points").click()
    s.page.get_by_label("Points (required)").fill("25")
    s.page.get_by_label("Reason (required)").fill("Goodwill after a late delivery")
    s.page.get_by_role("button", name="Adjust points").click()
    s.page.wait_for_load_state()
    assert s.page.locator("#balance").inner_text() == f"{balance + 25:,}"
    first = s.page.locator("#ledger tbody tr").first.inner_text()
    assert "adjust" in first and "+25" in first and "Goodwill" in first
    fresh()
    entry = db.session.scalar(select(LedgerEntry).where(LedgerEntry.customer_id == member.id)
                              .order_by(LedgerEntry.id.desc()))
    user_id = db.session.scalar(select(User.id).where(User.email == "admin@demo.example.com"))
    assert entry.actor == f"user:{user_id}:admin@demo.example.com"
    s.check("customer-360-adjusted")


def test_a_tier_edit_with_a_bad_value_shows_the_error_and_saves_nothing(demo, screen):
    silver = db.session.scalar(select(Tier).where(Tier.name == "Silver"))
    s = screen("admin")
    s.go("/console/setup")
    s.check("setup")
    s.go("/console/setup/tiers")
    s.check("setup-tiers")
    s.go(f"/console/setup/tiers/{silver.id}")
    s.page.get_by_label("Threshold points").fill("-5")
    s.page.get_by_label("Multiplier").fill("1.75")
    s.page.get_by_role("button", name="Save tier").click()
    s.page.wait_for_load_state()
    error = s.page.locator("#edit-threshold_points-error")
    assert "between" in error.inner_text().lower() or "must" in error.inner_text().lower()
    assert s.page.get_by_label("Threshold points").get_attribute("aria-invalid") == "true"
    s.check("setup-tier-error", 422)
    fresh()
    settings.forget()
    again = db.session.get(Tier, silver.id)
    assert (again.threshold_points, str(again.multiplier)) == (300, "1.25")


def test_a_viewer_sees_no_edit_controls_and_gets_403_when_posting_anyway(demo, screen):
    member = _demo_customer()
    s = screen("viewer")
    s.go(f"/console/customers/{member.id}")
    for control in ("Adjust points", "Edit profile", "Record consent", "Erase personal data"):
        assert s.page.get_by_text(control).count() == 0, control
    s.check("customer-360-viewer")
    s.go("/console/setup")
    assert s.page.get_by_role("button", name="Save program settings").count() == 0
    s.check("setup-viewer")
    token = s.page.locator('meta[name="csrf-token"]').get_attribute("content")
    answer = s.page.request.post(f"{s.base}/console/customers/{member.id}/adjustments",
                                 form={"csrf_token": token, "points": "500",
                                       "reason": "I should not"})
    assert answer.status == 403
    assert "Not allowed" in answer.text()
    s.go(f"/console/customers/{member.id}/merge/1")
    assert s.page.locator("h1").inner_text().startswith("403")
    s.check("error-403", 403)
    s.go("/console/no-such-page")
    assert s.page.locator("h1").inner_text().startswith("404")
    s.check("error-404", 404)


def test_a_form_posted_without_its_csrf_token_is_refused(demo, screen):
    member = _demo_customer()
    before = points.summary(member.id)["balance"]
    s = screen("admin")
    answer = s.page.request.post(f"{s.base}/console/customers/{member.id}/adjustments",
                                 form={"points": "500", "reason": "no token"})
    assert answer.status == 400
    assert "security token" in answer.text()
    fresh()
    assert points.summary(member.id)["balance"] == before


def test_keyboard_only_sign_in_and_reach_a_customer(demo, screen):
    member = _demo_customer()
    s = screen()
    s.go("/console/login")
    keys = s.page.keyboard
    s.page.locator("body").focus()
    # Tab from the top of the page: the skip link, then Email, Password and the button.
    for _ in range(10):
        keys.press("Tab")
        if s.page.evaluate("document.activeElement.id") == "email":
            break
    keys.type("marketer@demo.example.com")
    keys.press("Tab")
    keys.type("correct horse battery staple")
    keys.press("Enter")
    s.page.wait_for_url(re.compile(r"/console/$"))
    for _ in range(15):
        keys.press("Tab")
        if s.page.evaluate("document.activeElement.textContent.trim()") == "Customers":
            break
    keys.press("Enter")
    s.page.wait_for_url(re.compile(r"/console/customers"))
    for _ in range(15):
        keys.press("Tab")
        if s.page.evaluate("document.activeElement.id") == "q":
            break
    keys.type(f"{member.first_name} {member.last_name}")
    keys.press("Enter")
    s.page.wait_for_url(re.compile(r"q="))
    s.page.wait_for_load_state("networkidle")
    expect(s.page.locator("#customer-results")).to_contain_text(member.last_name)
    target = f"/console/customers/{member.id}"
    for _ in range(80):
        keys.press("Tab")
        if s.page.evaluate("document.activeElement.getAttribute('href')") == target:
            break
    keys.press("Enter")
    s.page.wait_for_url(re.compile(target + "$"))
    assert member.last_name in s.page.locator("h1").inner_text()


def test_loyalty_set_up_screens_offers_coupons_and_rewards(demo, screen):
    s = screen("marketer")
    for slug in ("rules", "offers", "rewards"):
        s.go(f"/console/setup/{slug}")
        s.check(f"setup-{slug}")
    s.go("/console/setup/offers")
    s.page.get_by_label("Name (required)").fill("Spring 15%")
    s.page.get_by_label("Kind (required)").select_option("percent")
    s.page.get_by_label("Value (required)").fill("15")
    s.page.get_by_role("button", name="Create offer").click()
    s.page.wait_for_load_state()
    assert "Spring 15%" in s.page.locator("#offers-table").inner_text()
    fresh()
    offer = db.session.scalar(select(Offer).where(Offer.name == "Spring 15%"))
    assert offer.active and not offer.stackable  # the form started from the defaults
    s.go(f"/console/setup/offers/{offer.id}")
    s.page.get_by_label("Count").fill("250")
    s.page.get_by_label("Prefix").fill("SPR-")
    s.page.get_by_role("button", name="Generate codes").click()
    s.page.wait_for_load_state()
    assert "250 codes made" in s.page.locator(".flash").inner_text()
    s.check("setup-offer")
    with s.page.expect_download() as download:
        s.page.locator("#batches-table a").first.click()
    lines = Path(download.value.path()).read_text().splitlines()
    assert len(lines) == 251 and lines[1].startswith("SPR-")

    # A batch larger than a part grows while the page shows its progress.
    s.page.get_by_label("Count").fill("12000")
    s.page.get_by_label("Prefix").fill("BIG-")
    s.page.get_by_role("button", name="Generate codes").click()
    s.page.get_by_role("status").get_by_text("of 12,000").wait_for()
    s.page.locator(".flash").get_by_text("12,000 codes made").wait_for(timeout=60_000)
    s.check("setup-offer-batch-done")
    with s.page.expect_download() as download:
        s.page.locator("#batches-table tr", has_text="12,000").get_by_role("link").click()
    lines = Path(download.value.path()).read_text().splitlines()
    assert len(lines) == 12_001 and len(set(lines)) == 12_001
    assert all(line.startswith("BIG-") for line in lines[1:])

    s.go("/console/setup/rewards")
    s.page.get_by_label("Name (required)").fill("Tote bag")
    s.page.get_by_label("Points cost (required)").fill("500")
    s.page.get_by_label("Offer id (required)").fill(str(offer.id))
    s.page.get_by_role("button", name="Create reward").click()
    s.page.wait_for_load_state()
    assert "Tote bag" in s.page.locator("#rewards-table").inner_text()
    s.check("setup-rewards-created")


def test_merge_with_confirmation_unmerge_export_and_erase(demo, screen, factory):
    member = _demo_customer()
    twin = factory.customer(first_name=member.first_name, last_name=member.last_name,
                            birthday=member.birthday, phone="+12125559004",
                            email="twin@example.com")
    s = screen("admin")
    s.go(f"/console/customers/{member.id}")
    assert str(twin.id) in s.page.locator("#duplicates").inner_text()
    s.page.locator(f"#duplicates a[href$='/merge/{twin.id}']").click()
    assert "twin@example.com" in s.page.locator("#merge-moves").inner_text()
    s.check("merge-confirm")
    s.page.get_by_role("button", name=re.compile("^Merge customer")).click()
    s.page.wait_for_load_state()
    assert "twin@example.com" in s.page.locator("#profile").inner_text()
    s.page.get_by_role("button", name=f"Unmerge {twin.id}").click()
    s.page.wait_for_load_state()
    assert "twin@example.com" not in s.page.locator("#profile").inner_text()
    with s.page.expect_download() as download:
        s.page.get_by_role("button", name="Download everything held (JSON)").click()
    assert '"identifiers"' in Path(download.value.path()).read_text()
    erase = s.page.get_by_role("button", name="Erase personal data")
    assert erase.is_disabled()
    s.page.get_by_label(re.compile("type ERASE")).fill(f"ERASE {member.id}")
    erase.click()
    s.page.wait_for_load_state()
    assert "erased" in s.page.locator("h1").inner_text()
    s.check("customer-erased")


def test_the_customer_page_shows_where_each_return_was_taken_back(demo, screen, factory,
                                                                  client):
    member = _demo_customer()
    fresh()
    sale = db.session.scalar(select(Purchase).where(Purchase.customer_id == member.id)
                             .order_by(Purchase.occurred_at.desc()))
    other = "SFO01" if db.session.get(Store, sale.store_id).code != "SFO01" else "NYC01"
    till = factory.headers("pos", store=other)
    r = client.post(f"/api/v1/purchases/{sale.id}/returns", headers=till,
                    json={"return_id": "CONSOLE-R1", "amount": "1.00"})
    assert r.status_code == 201, r.get_json()
    s = screen("viewer")
    s.go(f"/console/customers/{member.id}")
    row = s.page.locator("#purchases tbody tr", has_text=sale.receipt_id)
    expect(row).to_contain_text(f"CONSOLE-R1: $1.00 at {other} (applied)")
    expect(s.page.get_by_role("cell", name=re.compile(
        rf"return CONSOLE-R1 of receipt {sale.receipt_id} taken back at {other}"))).to_be_visible()
    s.check("customer-360-returned-elsewhere")
