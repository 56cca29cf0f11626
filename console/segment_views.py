"""The segment builder: the list of segments with their counts, and a screen to build or
edit a rule by explicit groups (all / any / not) of conditions, each with a field, an
operator that field takes and a value control of its type. The rule is counted as it is
typed (console.segment_counts: off the request, bounded, the newer rule replacing the
older), summarised in words (campaigns.segment_summary), and saved through the same
service as ``POST /segments``. A bad rule keeps every box as typed and shows the error at
the node the checker names."""

from __future__ import annotations

from typing import Any

from flask import Response, abort, flash, redirect, render_template, request, url_for
from marshmallow import ValidationError

from campaigns import segments
from campaigns.models import Segment
from campaigns.schemas import SegmentSchema
from campaigns.segment_rules import CHANNELS, FIELDS
from campaigns.segment_summary import compiled_sql, summarize
from console import segment_counts
from console import segment_form as sf
from console.web import actor, bp, can, role, user_zone
from crm import stores
from crm.db import db, utcnow, write_intent
from crm.errors import DomainError
from loyalty import settings

SAMPLE_SHOWN = 10
SCHEMA = SegmentSchema()


def _choices() -> dict[str, list[tuple[str, str]]]:
    """The values the pick-list fields offer: (value, label)."""
    return {
        "tiers": [(t.name, t.name) for t in settings.tiers()],
        "stores": [(s.code, f"{s.code} · {s.name}")
                   for s in db.session.scalars(stores.list_stores())],
        "categories": [(c, c) for c in segments.known_categories()],
        "channels": [(c, {"online": "online only", "store": "in stores only",
                          "both": "both online and in stores"}[c]) for c in CHANNELS],
        "months": [(str(i + 1), m) for i, m in enumerate(sf.MONTHS)],
    }


def _currency() -> str:
    return settings.program().currency


def _checked(rule: Any) -> tuple[dict[str, list[str]], str]:
    """The checker's errors by path (none for a good rule) and the rule in words."""
    try:
        return {}, summarize(rule, _currency())
    except DomainError as e:
        errors = e.extra.get("errors") or {"rule": [e.detail]}
        return {str(k): [str(m) for m in v] for k, v in errors.items()}, ""


def _sql(rule: Any) -> str:
    if not can("admin"):
        return ""
    try:
        return compiled_sql(rule, _currency(), utcnow())
    except DomainError:
        return ""


def _context(tree: sf.Node, segment: Segment | None, name: str, **extra: Any) -> dict:
    return {"tree": tree, "segment": segment, "name": name, "fields": FIELDS,
            "labels": sf.LABELS, "ops": sf.OPS, "group_labels": sf.GROUP_LABELS,
            "choice_fields": sf.CHOICE_FIELDS, "choices": _choices(),
            "currency": _currency(), "node_errors": {}, "message": "", "focus": None,
            "name_error": "", **extra}


def _page(tree: sf.Node, segment: Segment | None, name: str, status: int = 200,
          **extra: Any) -> Any:
    return render_template("console/segment.html", **_context(tree, segment, name,
                                                              **extra)), status


@bp.get("/segments")
def segments_list() -> Any:
    rows = db.session.scalars(segments.list_segments()).all()
    currency = _currency()
    summaries = {}
    for s in rows:
        try:
            summaries[s.id] = summarize(s.rule, currency)
        except DomainError as e:  # a rule that no longer checks (a tier renamed, say)
            summaries[s.id] = f"Not valid any more: {e.detail}"
    return render_template("console/segments.html", rows=rows, summaries=summaries)


@bp.get("/segments/new")
@role("marketer")
def segment_new() -> Any:
    return _page(sf.new_tree(), None, "")


@bp.get("/segments/<int:segment_id>")
def segment_edit(segment_id: int) -> Any:
    segment = db.session.get(Segment, segment_id)
    if segment is None:
        abort(404)
    if not can("marketer"):
        errors, summary = _checked(segment.rule)
        return render_template("console/segment_view.html", segment=segment,
                               summary=summary, errors=errors)
    return _page(sf.from_rule(segment.rule), segment, segment.name)


def _save(segment: Segment | None) -> Any:
    tree = sf.renumber(sf.read(request.form))
    name = request.form.get("name", "").strip()
    rule = sf.to_rule(tree)
    try:
        data = SCHEMA.load({"name": name, "rule": rule})
    except ValidationError as e:
        messages = e.messages if isinstance(e.messages, dict) else {}
        return _page(tree, segment, name, 422, message="The segment was not saved.",
                     name_error=" ".join(map(str, messages.get("name", []))))
    try:
        saved = (segments.create_segment(data, actor()) if segment is None
                 else segments.update_segment(segment.id, data, actor()))
        db.session.commit()
    except DomainError as e:
        db.session.rollback()
        errors = e.extra.get("errors") or {"rule": [e.detail]}
        node_errors = sf.errors_by_node(errors, tree)
        return _page(tree, segment, name, 422, node_errors=node_errors,
                     message=f"The segment was not saved: {_where(node_errors, tree)}.")
    flash(f"Segment {saved.name!r} saved.", "ok")
    return redirect(url_for("console.segment_edit", segment_id=saved.id))


def _where(node_errors: dict[str, dict[str, Any]], tree: sf.Node) -> str:
    parts = []
    for path, entry in node_errors.items():
        node = sf.find(tree, path)
        what = ("the outer group" if path == sf.ROOT else
                f"{'condition' if node and node.kind == 'cond' else 'group'} "
                f"{node.number if node else ''}")
        parts.append(f"{what}: {' '.join(entry['messages'])}".rstrip("."))
    return "; ".join(parts)


@bp.post("/segments")
@role("marketer")
def segment_create() -> Any:
    return _save(None)


@bp.post("/segments/<int:segment_id>")
@role("marketer")
def segment_update(segment_id: int) -> Any:
    segment = db.session.get(Segment, segment_id)
    if segment is None:
        abort(404)
    return _save(segment)


def _reads_only() -> None:
    """This POST only reads (it carries a rule, not a change): end the transaction the
    sign-in check began as a writer, so that SQLite's write lock is not held while a
    count runs, and read on. (The program row, made on first use, is made first: the
    count's thread only reads.)"""
    settings.program()
    db.session.commit()
    write_intent.set(False)


@bp.post("/segments/builder")
@role("marketer")
def segment_builder() -> Any:
    """A builder button (add a condition or a group, remove one) or a changed field: the
    tree again, as typed, with the change; htmx swaps it in and recounts."""
    _reads_only()
    tree = sf.read(request.form)
    trigger = request.headers.get("HX-Trigger-Name", "")  # the control that posted
    focus = sf.change(tree, request.form.get("action", "refresh"),
                      field_changed=trigger[:-6] if trigger.endswith(".field") else None)
    segment_id = request.form.get("segment_id", "")
    segment = db.session.get(Segment, int(segment_id)) if segment_id.isdigit() else None
    name = request.form.get("name", "")
    if request.headers.get("HX-Request") != "true":  # without script: the whole page
        return _page(tree, segment, name, focus=focus)
    html = render_template("console/segment_builder.html",
                           **_context(tree, segment, name, focus=focus))
    return Response(html, headers={"HX-Trigger": "rebuilt"})


@bp.post("/segments/count")
@role("marketer")
def segment_count() -> Any:
    """The live count of the rule on the screen (not saved)."""
    _reads_only()
    tree = sf.renumber(sf.read(request.form))
    return _count(sf.to_rule(tree), tree, f"user:{actor()}",
                  {"hx-post": url_for("console.segment_count"),
                   "hx-include": "#segment-form"})


@bp.get("/segments/<int:segment_id>/count")
def segment_saved_count(segment_id: int) -> Any:
    """The count of a saved segment: its list row (``?brief=1``) or its page."""
    segment = db.session.get(Segment, segment_id)
    if segment is None:
        abort(404)
    brief = request.args.get("brief") == "1"
    poll = {"hx-get": url_for("console.segment_saved_count", segment_id=segment_id,
                              brief="1" if brief else None)}
    if brief:
        errors, _ = _checked(segment.rule)
        outcome = None if errors else segment_counts.count(f"list:{segment_id}",
                                                           segment.rule)
        return render_template("console/segment_count_cell.html", outcome=outcome,
                               errors=errors, poll=poll, segment=segment)
    return _count(segment.rule, sf.from_rule(segment.rule), f"user:{actor()}", poll)


def _count(rule: Any, tree: sf.Node, who: str, poll: dict[str, str]) -> Any:
    errors, summary = _checked(rule)
    outcome = None if errors else segment_counts.count(who, rule)
    node_errors = sf.errors_by_node(errors, tree) if errors else {}
    return render_template(
        "console/segment_count.html", outcome=outcome, summary=summary,
        sql=_sql(rule) if outcome is not None else "", node_errors=node_errors,
        node_errors_text={p: e["messages"] for p, e in node_errors.items()},
        where=_where(node_errors, tree), poll=poll,
        counted_at=outcome.at.astimezone(user_zone()).strftime("%H:%M:%S %Z")
        if outcome is not None and outcome.at else "", shown=SAMPLE_SHOWN)
