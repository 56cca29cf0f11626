"""The segment builder in a real browser (Chromium, Playwright, axe-core; see conftest):
the API.md example built by clicking, its count equal to ``GET /segments/{id}/preview``,
a broken condition shown at its node with the others kept, and a keyboard-only walk."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from campaigns import segments
from campaigns.models import Segment
from console import segment_counts
from crm.db import db
from tests.campaigns.test_segment_summary import EXAMPLE
from tests.console.conftest import fresh

COUNTED = re.compile(r"^[\d,]+ members?, counted at \d\d:\d\d:\d\d \S+$")


@pytest.fixture(autouse=True)
def _no_counts_left():
    yield
    segment_counts.forget()


def _replaced_counts_only(s) -> None:
    """A count replaced in flight by a newer one (``hx-sync`` replace, as asked) is
    aborted, and htmx says so on the console: those lines, and only as many as there were
    aborts, are expected; any other error still fails ``check``."""
    aborts = sum("htmx:sendAbort" in e for e in s.errors)
    kept = []
    for e in s.errors:
        if "htmx:sendAbort" in e:
            continue
        if aborts and e.startswith("htmx:afterRequest"):
            aborts -= 1
            continue
        kept.append(e)
    s.errors[:] = kept


def _check(s, name: str, status: int | None = None) -> None:
    _replaced_counts_only(s)
    s.check(name, status)


def _counted(s) -> int:
    line = s.page.locator("#count-line")
    expect(line).to_have_text(COUNTED)
    return int(s.page.locator("#member-count").inner_text().replace(",", ""))


def _api_preview(s, factory, segment_id: int) -> dict:
    answer = s.page.request.get(f"{s.base}/api/v1/segments/{segment_id}/preview",
                                headers=factory.headers("marketing"))
    assert answer.status == 200
    return answer.json()


def test_the_api_example_built_by_clicking_counts_as_the_api_preview(demo, screen, factory):
    s = screen("marketer")
    s.go("/console/segments")
    _check(s, "segments-list")
    s.page.get_by_role("link", name="New segment").click()
    s.page.get_by_label("Name (required)").fill("Lapsed big spenders")
    s.page.get_by_label("Value (USD) of condition 1", exact=True).fill("400.00")
    s.page.get_by_label("In the last (days) for condition 1", exact=True).fill("30")
    s.page.get_by_role("button", name="Add condition", exact=True).click()
    field = s.page.get_by_label("Field of condition 2", exact=True)
    expect(field).to_be_focused()  # the new condition has the focus
    field.select_option(label="Days since last purchase")
    expect(s.page.get_by_label("Value (days) of condition 2", exact=True)).to_be_visible()
    expect(s.page.get_by_label("Comparison of condition 2", exact=True)).to_have_value("gte")
    s.page.get_by_label("Value (days) of condition 2", exact=True).fill("14")
    expect(s.page.locator("#summary")).to_have_text(
        "Members who spent at least 400.00 USD in the last 30 days and has not bought in "
        "14 days.")
    shown = _counted(s)
    _check(s, "segment-builder-example")
    s.page.get_by_role("button", name="Save segment").click()
    expect(s.page.get_by_text("Segment 'Lapsed big spenders' saved.").first).to_be_visible()
    fresh()
    segment = db.session.scalar(select(Segment).where(Segment.name == "Lapsed big spenders"))
    assert segment.rule == EXAMPLE
    api = _api_preview(s, factory, segment.id)
    assert _counted(s) == shown == api["count"]
    _check(s, "segment-saved")

    # A rule with members: the count, and the sample linking to each member's page.
    s.page.get_by_label("Value (USD) of condition 1", exact=True).fill("1.00")
    s.page.get_by_label("In the last (days) for condition 1", exact=True).fill("365")
    s.page.get_by_label("Value (days) of condition 2", exact=True).fill("1")
    expect(s.page.locator("#summary")).to_contain_text("in the last 365 days")
    shown = _counted(s)
    s.page.get_by_role("button", name="Save segment").click()
    expect(s.page.get_by_text("Segment 'Lapsed big spenders' saved.").first).to_be_visible()
    api = _api_preview(s, factory, segment.id)
    assert _counted(s) == api["count"] == shown and shown > 0
    links = s.page.locator("#sample a")
    expected = [m["id"] for m in api["sample"]][:10]
    assert [int(links.nth(i).get_attribute("href").rsplit("/", 1)[1])
            for i in range(links.count())] == expected
    first = links.first.inner_text()
    links.first.click()
    s.page.wait_for_url(re.compile(rf"/console/customers/{expected[0]}$"))
    assert first.split()[0] in s.page.locator("h1").inner_text()
    s.go("/console/segments")
    expect(s.page.locator(f"#count-{segment.id}")).to_have_text(f"{api['count']:,}")
    _check(s, "segments-list-counted")


def test_a_broken_condition_shows_its_error_there_and_keeps_the_others(demo, screen):
    segment = segments.create_segment({"name": "Example", "rule": {"all": [
        *EXAMPLE["all"], {"any": [{"field": "tier", "op": "eq", "value": "Gold"},
                                   {"field": "consent_sms", "op": "eq", "value": True}]}]}})
    db.session.commit()
    s = screen("marketer")
    s.go(f"/console/segments/{segment.id}")
    _counted(s)
    expect(s.page.get_by_label("Value of condition 3.1", exact=True)).to_have_value("Gold")
    s.page.get_by_label("Value (days) of condition 2", exact=True).fill("fourteen")
    error = s.page.locator("#err-r-1")
    expect(error).to_have_text("A whole number.")  # live, at the node, as typed
    expect(s.page.locator("#count-line")).to_contain_text("Not counted")
    expect(s.page.locator("#err-r-0")).to_have_text("")
    _check(s, "segment-live-error")
    s.page.get_by_role("button", name="Save segment").click()
    s.page.wait_for_load_state()
    expect(s.page.locator("#save-error")).to_contain_text("condition 2: A whole number.")
    expect(s.page.locator("#err-r-1")).to_have_text("A whole number.")
    value = s.page.get_by_label("Value (days) of condition 2", exact=True)
    expect(value).to_have_value("fourteen")
    expect(value).to_have_attribute("aria-invalid", "true")
    expect(s.page.get_by_label("Value (USD) of condition 1", exact=True)).to_have_value(
        "400.00")
    expect(s.page.get_by_label("In the last (days) for condition 1", exact=True)
           ).to_have_value("30")
    expect(s.page.get_by_label("Value of condition 3.1", exact=True)).to_have_value("Gold")
    expect(s.page.get_by_label("Match in group 3", exact=True)).to_have_value("any")
    _check(s, "segment-save-error", 422)
    fresh()
    assert db.session.get(Segment, segment.id).rule["all"][1]["value"] == 14


def test_a_segment_built_with_the_keyboard_only(demo, screen):
    s = screen("marketer")
    s.go("/console/segments/new")
    # A new condition has no value yet: said at its node, not counted.
    expect(s.page.locator("#err-r-0")).to_contain_text("An amount is a decimal string")
    s.page.get_by_label("Name (required)").focus()
    s.page.keyboard.type("Keyboard made")
    s.page.keyboard.press("Tab")  # the outer group's "Match"
    expect(s.page.get_by_label("Match in the outer group", exact=True)).to_be_focused()
    s.page.keyboard.press("Tab")
    expect(s.page.get_by_label("Field of condition 1", exact=True)).to_be_focused()
    s.page.keyboard.press("Tab")
    s.page.keyboard.press("Tab")
    value = s.page.get_by_label("Value (USD) of condition 1", exact=True)
    expect(value).to_be_focused()
    s.page.keyboard.type("25.00")
    for _ in range(3):  # the window, Remove condition 1, then Add condition
        s.page.keyboard.press("Tab")
    add = s.page.get_by_role("button", name="Add condition", exact=True)
    expect(add).to_be_focused()
    s.page.keyboard.press("Enter")
    field = s.page.get_by_label("Field of condition 2", exact=True)
    expect(field).to_be_focused()  # the focus moved into the new condition
    field.press("Home")  # the first field (Tier) from the keyboard: the builder redraws
    expect(s.page.get_by_label("Comparison of condition 2", exact=True)).to_have_value("eq")
    expect(field).to_be_focused()  # and the focus stays where it was
    s.page.keyboard.press("Tab")
    s.page.keyboard.press("Tab")
    tier = s.page.get_by_label("Value of condition 2", exact=True)
    expect(tier).to_be_focused()
    tier.press("ArrowDown")
    s.page.keyboard.press("Tab")
    remove = s.page.get_by_role("button", name="Remove condition 2")
    expect(remove).to_be_focused()
    s.page.keyboard.press("Enter")
    expect(s.page.get_by_label("Field of condition 2", exact=True)).to_have_count(0)
    expect(add).to_be_focused()  # back to the group that lost it
    expect(s.page.locator("#summary")).to_contain_text("spent at least 25.00 USD in all")
    _counted(s)
    _check(s, "segment-keyboard")
    s.page.get_by_role("button", name="Save segment").focus()
    s.page.keyboard.press("Enter")
    expect(s.page.get_by_text("Segment 'Keyboard made' saved.").first).to_be_visible()
    fresh()
    saved = db.session.scalar(select(Segment).where(Segment.name == "Keyboard made"))
    assert saved.rule == {"all": [{"field": "spend", "op": "gte", "value": "25.00"}]}


def test_groups_pick_lists_and_roles(demo, screen):
    s = screen("admin")
    s.go("/console/segments/new")
    s.page.get_by_role("button", name="Add group", exact=True).click()
    kind = s.page.get_by_label("Match in group 2", exact=True)
    expect(kind).to_be_focused()
    kind.select_option("not")
    s.page.get_by_label("Field of condition 2.1", exact=True).select_option(
        label="Bought at store")
    s.page.get_by_label("Comparison of condition 2.1", exact=True).select_option("in")
    picks = s.page.get_by_role("group", name="Values of condition 2.1")
    expect(picks.get_by_role("checkbox")).not_to_have_count(0)
    picks.get_by_role("checkbox").first.check()
    s.page.get_by_label("Value (USD) of condition 1", exact=True).fill("10")
    expect(s.page.locator("#summary")).to_contain_text("and not (bought at store")
    _counted(s)
    # chosen without waiting for each redraw, and all still there once they landed
    expect(picks.get_by_role("checkbox").first).to_be_checked()
    expect(s.page.get_by_label("Value (USD) of condition 1", exact=True)).to_have_value("10")
    expect(s.page.get_by_label("Match in group 2", exact=True)).to_have_value("not")
    s.page.locator("#sql summary").click()
    expect(s.page.locator("#sql pre")).to_contain_text("SELECT count(*)")
    _check(s, "segment-group-admin")
    # condition 1's field changed from an amount to a store: its 10 (USD) does not carry over
    s.page.get_by_label("Field of condition 1", exact=True).select_option(label="Bought at store")
    expect(s.page.get_by_label("Value of condition 1", exact=True)).to_have_value("")
    expect(s.page.get_by_label("Value of condition 1", exact=True)).to_have_js_property(
        "tagName", "SELECT")  # the demo's stores to choose from
    segments.create_segment({"name": "Viewer sees", "rule": EXAMPLE})
    db.session.commit()
    v = screen("viewer")
    v.go("/console/segments")
    expect(v.page.get_by_role("link", name="New segment")).to_have_count(0)
    v.page.get_by_role("link", name="Viewer sees").click()
    _counted(v)
    expect(v.page.get_by_role("button", name="Save segment")).to_have_count(0)
    _check(v, "segment-viewer")
