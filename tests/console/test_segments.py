"""The segment builder through Flask's test client: the form as a rule and back, saving
through the segments service (audited with the user), errors at the node they name with
every box as typed, the live count against the API's preview, counts that take long
(progress, then the figure), and roles."""

from __future__ import annotations

import json
import re
from html import unescape as html_unescape

import pytest
from sqlalchemy import select

from campaigns import segments
from campaigns.models import Segment
from console import segment_counts
from console import segment_form as sf
from crm.db import db
from crm.demo import load_demo
from crm.models import AuditLog
from tests.campaigns.test_segment_summary import EXAMPLE, _many_customers
from tests.console.conftest import fresh
from tests.console.test_console import _sign_in, _token, _user

FORM = {"r.kind": "all",
        "r-0.kind": "cond", "r-0.field": "spend", "r-0.op": "gte", "r-0.value": "400.00",
        "r-0.window_days": "30",
        "r-1.kind": "cond", "r-1.field": "days_since_last_purchase", "r-1.op": "gte",
        "r-1.value": "14"}


@pytest.fixture(autouse=True)
def _no_counts_left():
    yield
    segment_counts.forget()


def _signed_in(client, role: str = "marketer"):
    user = _user(role)
    _sign_in(client, f"{role}@example.com")
    return user, _token(client, "/console/")


def test_the_form_reads_as_the_rule_and_the_rule_as_the_form():
    class Form(dict):
        def getlist(self, key):
            value = self.get(key)
            return value if isinstance(value, list) else [] if value is None else [value]

    tree = sf.read(Form(FORM))
    assert sf.to_rule(tree) == EXAMPLE
    assert sf.to_rule(sf.from_rule(EXAMPLE)) == EXAMPLE
    nested = {"any": [{"not": {"field": "tier", "op": "in", "value": ["Gold", "Silver"]}},
                      {"all": [{"field": "age", "op": "between", "value": [30, 40]},
                               {"field": "city", "op": "in", "value": ["Paris", "Lyon"]}]}]}
    assert sf.to_rule(sf.from_rule(nested)) == nested
    # A lone condition is shown in an outer group; a `not` keeps to one member.
    assert sf.to_rule(sf.from_rule({"field": "consent_sms", "op": "eq", "value": True})) == {
        "all": [{"field": "consent_sms", "op": "eq", "value": True}]}
    two = sf.Node("r", "not", [sf.new_condition("r-0"), sf.new_condition("r-1")])
    assert sf.to_rule(sf.renumber(two))["not"]["all"][1]["field"] == "spend"


@pytest.mark.parametrize("path, node, control", [
    ("rule.all[1].value", "r-1", "value"),
    ("rule.any[0].not.all[2].window_days", "r-0-0-2", "window_days"),
    ("rule.all[0].value[1]", "r-0", "value2"),
    ("rule.all", "r", ""),
    ("rule.not", "r-0", ""),
])
def test_error_paths_name_the_builder_node(path, node, control):
    assert sf.locate(path) == (node, control)


def test_a_marketer_saves_the_api_example_and_the_audit_names_them(client, factory):
    user, token = _signed_in(client)
    answer = client.post("/console/segments", data={**FORM, "name": "Lapsed big spenders",
                                                   "csrf_token": token})
    assert answer.status_code == 302
    fresh()
    segment = db.session.scalar(select(Segment))
    assert answer.headers["Location"].endswith(f"/console/segments/{segment.id}")
    assert (segment.name, segment.rule) == ("Lapsed big spenders", EXAMPLE)
    row = db.session.scalar(select(AuditLog).where(AuditLog.object_type == "segment"))
    assert (row.action, row.actor, row.object_id) == (
        "create", f"user:{user.id}:marketer@example.com", str(segment.id))
    # Editing it: the same form, loaded from the stored rule, with one value changed.
    page = client.get(f"/console/segments/{segment.id}").get_data(as_text=True)
    assert 'value="400.00"' in page and 'value="14"' in page
    client.post(f"/console/segments/{segment.id}", data={
        **FORM, "r-1.value": "21", "name": "Lapsed big spenders", "csrf_token": token})
    fresh()
    assert db.session.get(Segment, segment.id).rule["all"][1]["value"] == 21
    update = db.session.scalar(select(AuditLog).where(AuditLog.action == "update",
                                                      AuditLog.object_type == "segment"))
    assert update.fields == ["rule"] and update.actor.startswith(f"user:{user.id}:")


def test_a_bad_rule_shows_the_error_at_its_node_and_keeps_every_box(client, factory):
    _, token = _signed_in(client)
    answer = client.post("/console/segments", data={
        **FORM, "r-1.value": "fourteen", "name": "Broken", "csrf_token": token})
    assert answer.status_code == 422
    html = answer.get_data(as_text=True)
    error = re.search(r'<p class="field-error seg-error" id="err-r-1">([^<]*)</p>', html)
    assert error and error.group(1) == "A whole number."
    assert re.search(r'id="err-r-0">\s*</p>', html)  # the other node has none
    assert 'value="fourteen"' in html and 'value="400.00"' in html and 'value="30"' in html
    assert re.search(r'id="r-1-value"[^>]*aria-invalid="true"', html)
    assert "condition 2: A whole number." in html
    fresh()
    assert db.session.scalar(select(Segment)) is None


def test_builder_buttons_add_and_remove_nodes_keeping_the_rest(client, factory):
    _, token = _signed_in(client)
    headers = {"HX-Request": "true"}
    added = client.post("/console/segments/builder", headers=headers, data={
        **FORM, "action": "add-group:r", "csrf_token": token})
    html = added.get_data(as_text=True)
    assert added.headers["HX-Trigger"] == "rebuilt"
    assert 'id="r-2-kind"' in html and 'id="r-2-0-field"' in html
    assert re.search(r'id="r-2-kind"[^>]*autofocus', html)
    removed = client.post("/console/segments/builder", headers=headers, data={
        **FORM, "action": "remove:r-0", "csrf_token": token}).get_data(as_text=True)
    assert 'id="r-1-field"' not in removed
    assert re.search(r'<option value="days_since_last_purchase" selected>', removed)
    # A field changed to one without `gte`: an operator it has; the value stays typed.
    changed = client.post("/console/segments/builder", headers=headers, data={
        **FORM, "r-0.field": "city", "action": "refresh", "csrf_token": token})
    assert re.search(r'<option value="eq" selected>is</option>', changed.get_data(as_text=True))
    assert 'value="400.00"' in changed.get_data(as_text=True)


def test_a_changed_field_starts_a_value_of_another_kind_afresh(client, factory):
    _, token = _signed_in(client)

    def redraw(trigger: str, **changes: str) -> str:
        headers = {"HX-Request": "true", "HX-Trigger-Name": trigger}
        return client.post("/console/segments/builder", headers=headers, data={
            **FORM, "r-0.was": "spend", **changes, "action": "refresh",
            "csrf_token": token}).get_data(as_text=True)

    # spend (an amount) to a store: the amount and the operator go; the window (both
    # take one) stays
    html = redraw("r-0.field", **{"r-0.field": "store"})
    assert 'value="400.00"' not in html and 'value="30"' in html
    assert re.search(r'id="r-0-value"[^>]*value=""', html)  # no stores here: a box
    assert re.search(r'id="r-0-op".*?<option value="eq" selected>', html, re.S)
    assert 'name="r-0.was" value="store"' in html
    # spend to points (a whole number, no window): neither the amount nor the window fit
    points = redraw("r-0.field", **{"r-0.field": "points_balance"})
    assert 'value="400.00"' not in points and 'id="r-0-window"' not in points
    # to a field whose values read the same (points_expiring: a number, a window): kept
    same = redraw("r-0.field", **{"r-0.field": "points_expiring", "r-0.was": "points_balance",
                                  "r-0.value": "50"})
    assert 'value="50"' in same and 'value="30"' in same
    # the operator changed on a condition drawn for the old field (its redraw not yet
    # landed): the operator and value chosen are kept, nothing is reset
    kept = redraw("r-0.op", **{"r-0.field": "store", "r-0.op": "in", "r-0.value": "NYC01"})
    assert re.search(r'id="r-0-op".*?<option value="in" selected>', kept, re.S)


def _live(client, token: str, form: dict) -> str:
    return client.post("/console/segments/count", headers={"HX-Request": "true"},
                       data={**form, "csrf_token": token}).get_data(as_text=True)


def test_the_live_count_is_the_api_preview_with_a_sample_and_words(client, factory):
    load_demo(40)
    db.session.commit()
    rule = {"all": [{"field": "consent_sms", "op": "eq", "value": True},
                    {"field": "purchase_count", "op": "gte", "value": 1}]}
    form = {"r.kind": "all", "r-0.kind": "cond", "r-0.field": "consent_sms", "r-0.op": "eq",
            "r-0.value": "true", "r-1.kind": "cond", "r-1.field": "purchase_count",
            "r-1.op": "gte", "r-1.value": "1"}
    segment = segments.create_segment({"name": "Buyers with SMS", "rule": rule})
    db.session.commit()
    api = client.get(f"/api/v1/segments/{segment.id}/preview",
                     headers=factory.headers("marketing")).get_json()
    assert api["count"] > 0
    _, token = _signed_in(client)
    html = _live(client, token, form)
    count = int(re.search(r'id="member-count">([\d,]+)<', html).group(1).replace(",", ""))
    assert count == api["count"]
    assert re.search(r"members?, counted at <time[^>]*>\d\d:\d\d:\d\d UTC</time>", html)
    assert "agreed to SMS and made at least 1 purchase in all" in html
    links = re.findall(r'href="/console/customers/(\d+)"', html)
    assert [int(i) for i in links] == [m["id"] for m in api["sample"]][:10]
    assert "Compiled SQL" not in html  # administrators only
    # A broken condition: no count, the error by the node it names (for segments.js).
    bad = _live(client, token, {**form, "r-1.value": "-1"})
    assert "Not counted" in bad and 'id="member-count"' not in bad
    errors = json.loads(html_unescape(re.search(r"data-errors='([^']*)'", bad).group(1)))
    assert errors == {"r-1": ["From 0 to 1000000000000."]}
    # The list counts each saved segment too.
    cell = client.get(f"/console/segments/{segment.id}/count?brief=1").get_data(as_text=True)
    assert f'id="count-{segment.id}">{api["count"]}<' in cell


def test_an_admin_also_sees_the_compiled_sql(client, factory):
    _, token = _signed_in(client, "admin")
    html = _live(client, token, FORM)
    assert "Compiled SQL (administrators)" in html and "SELECT count(*)" in html


def test_a_long_count_shows_progress_then_the_figure(client, factory, app):
    _many_customers(100_000)
    _, token = _signed_in(client)
    form = {"r.kind": "any", "r-0.kind": "cond", "r-0.field": "city", "r-0.op": "eq",
            "r-0.value": "Lyon", "r-1.kind": "cond", "r-1.field": "age", "r-1.op": "gte",
            "r-1.value": "30"}
    app.config["SEGMENT_COUNT_WAIT"] = 0
    try:
        first = _live(client, token, form)
    finally:
        del app.config["SEGMENT_COUNT_WAIT"]
    assert "Counting…" in first and 'hx-trigger="load delay:500ms"' in first
    assert 'hx-post="/console/segments/count"' in first  # it asks again, with the rule
    for _ in range(30):  # each ask waits up to a second for the same count
        again = _live(client, token, form)
        if 'id="member-count"' in again:
            break
    assert 'id="member-count">100,000<' in again


def test_a_viewer_reads_segments_and_may_not_post(client, factory):
    segment = segments.create_segment({"name": "All SMS", "rule": EXAMPLE})
    db.session.commit()
    _, token = _signed_in(client, "viewer")
    listing = client.get("/console/segments").get_data(as_text=True)
    assert "All SMS" in listing and "New segment" not in listing
    assert "spent at least 400.00 USD in the last 30 days" in listing
    page = client.get(f"/console/segments/{segment.id}").get_data(as_text=True)
    assert "Save segment" not in page and "has not bought in 14 days" in page
    for path in ("/console/segments", f"/console/segments/{segment.id}",
                 "/console/segments/count", "/console/segments/builder"):
        answer = client.post(path, data={**FORM, "name": "x", "csrf_token": token})
        assert answer.status_code == 403, path
    assert client.get("/console/segments/new").status_code == 403
    fresh()
    assert db.session.get(Segment, segment.id).name == "All SMS"
