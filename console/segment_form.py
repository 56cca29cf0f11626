"""The segment builder's form: a rule tree as named form fields and back, kept as the
marketer typed it (a bad value stays in its box), and the rule checker's error paths
(``rule.all[1].value``) mapped to the builder's nodes.

Nodes are named by their place: ``r`` is the outer group, ``r-0`` its first member,
``r-0-2`` the third member of that, and so on; each node sends ``<path>.kind`` (``all``,
``any``, ``not`` or ``cond``) and a condition its ``.field``, ``.op``, ``.value`` (one or
several), ``.value2`` (the high end of ``between``) and ``.window_days``. Nothing here
decides what a rule means: types and operators are segment_rules' ``FIELDS``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as member_list
from typing import Any

from campaigns.segment_rules import FIELDS, MAX_NODES

GROUPS = ("all", "any", "not")
ROOT = "r"
_INT = re.compile(r"-?\d{1,15}")
_CHILD = re.compile(r"^(?P<parent>.+)-(?P<i>\d{1,3})\.kind$")

LABELS = {
    "tier": "Tier", "points_balance": "Points balance", "points_expiring": "Points expiring",
    "spend": "Spend", "purchase_count": "Number of purchases",
    "days_since_last_purchase": "Days since last purchase", "bought_sku": "Bought SKU",
    "bought_category": "Bought in category", "store": "Bought at store",
    "channel": "Buys through channel", "birthday_month": "Birthday month", "age": "Age",
    "city": "City", "created_at": "Member since", "consent_sms": "SMS consent",
    "consent_email": "Email consent", "nps_score": "Latest NPS score",
    "rfm_r": "RFM recency score (1-5)", "rfm_f": "RFM frequency score (1-5)",
    "rfm_m": "RFM monetary score (1-5)", "coupon_redeemed": "Redeemed a coupon",
}
OPS = {"eq": "is", "ne": "is not", "gt": "more than", "gte": "at least",
       "lt": "less than", "lte": "at most", "in": "is one of", "between": "between"}
GROUP_LABELS = {"all": "all of these (and)", "any": "any of these (or)",
                "not": "not this (negation)"}
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]
CHOICE_FIELDS = {"tier": "tiers", "store": "stores", "bought_category": "categories",
                 "channel": "channels", "birthday_month": "months"}
NEW_FIELD, NEW_OP = "spend", "gte"


@dataclass
class Node:
    path: str
    kind: str  # all, any, not, cond
    children: list[Node] = member_list(default_factory=list)
    field: str = ""
    op: str = ""
    values: list[str] = member_list(default_factory=list)  # as typed
    value2: str = ""
    window_days: str = ""
    was: str = ""  # the field this condition's value controls were drawn for (``.was``)

    @property
    def number(self) -> str:
        """The node's place as people count: ``1.2`` (the outer group has none)."""
        return ".".join(str(int(i) + 1) for i in self.path.split("-")[1:])

    @property
    def spec(self) -> Any:
        return FIELDS.get(self.field)

    @property
    def value(self) -> str:
        return ", ".join(self.values)


def new_condition(path: str) -> Node:
    return Node(path, "cond", field=NEW_FIELD, op=NEW_OP)


def new_tree() -> Node:
    return Node(ROOT, "all", [new_condition(f"{ROOT}-0")])


# -- the posted form to a tree ------------------------------------------------------------

def read(form: Any) -> Node:
    """The tree the form describes (at most MAX_NODES nodes; members in order)."""
    children: dict[str, list[tuple[int, str]]] = {}
    kinds = [k for k in form if k.endswith(".kind")][: MAX_NODES + 1]
    for key in kinds:
        m = _CHILD.match(key)
        if m:
            children.setdefault(m["parent"], []).append((int(m["i"]), key[:-5]))
    return _read(form, ROOT, children, 0)


def _read(form: Any, path: str, children: dict, depth: int) -> Node:
    kind = form.get(f"{path}.kind", "all")
    if kind in GROUPS:
        members = [] if depth > 20 else [
            _read(form, p, children, depth + 1) for _, p in sorted(children.get(path, []))]
        return Node(path, kind, members)
    many = form.getlist(f"{path}.value") if hasattr(form, "getlist") else [
        form.get(f"{path}.value", "")]
    return Node(path, "cond", field=form.get(f"{path}.field", ""),
                op=form.get(f"{path}.op", ""), values=[v.strip() for v in many],
                value2=form.get(f"{path}.value2", "").strip(),
                window_days=form.get(f"{path}.window_days", "").strip(),
                was=form.get(f"{path}.was", ""))


def renumber(node: Node, path: str = ROOT) -> Node:
    """Paths after a change of the tree's shape, and a ``not`` kept to one member (more
    are put in an explicit ``all`` group inside it, shown as such)."""
    node.path = path
    if node.kind == "not" and len(node.children) > 1:
        node.children = [Node("", "all", node.children)]
    for i, child in enumerate(node.children):
        renumber(child, f"{path}-{i}")
    return node


def find(node: Node, path: str) -> Node | None:
    if node.path == path:
        return node
    for child in node.children:
        hit = find(child, path)
        if hit is not None:
            return hit
    return None


def change(tree: Node, action: str, field_changed: str | None = None) -> str | None:
    """Apply a builder button (``add-cond:r-1``, ``add-group:r``, ``remove:r-0-2``) and
    fit each condition's operator to its field; ``field_changed`` names the condition
    whose field the marketer just changed (its value starts afresh if it was typed for a
    field of another kind). Returns the id of the control that gets the focus next (the
    new node's field, or the group that lost a member)."""
    verb, _, path = action.partition(":")
    changed = find(tree, field_changed) if field_changed and verb == "refresh" else None
    if changed is not None and changed.kind == "cond":
        _refit(changed)
    target = find(tree, path)
    focus = None
    if verb in ("add-cond", "add-group") and target is not None and target.kind in GROUPS:
        if not (target.kind == "not" and target.children):
            new = new_condition("") if verb == "add-cond" else Node(
                "", "all", [new_condition("")])
            target.children.append(new)
            renumber(tree)
            focus = f"{new.path}-field" if verb == "add-cond" else f"{new.path}-kind"
    elif verb == "remove" and target is not None and path != ROOT:
        parent = find(tree, path.rsplit("-", 1)[0])
        if parent is not None:
            parent.children.remove(target)
            renumber(tree)
            focus = f"{parent.path}-add-cond"
    renumber(tree)
    _fit(tree)
    return focus


def _fit(node: Node) -> None:
    """A condition whose field changed takes an operator that field has."""
    for child in node.children:
        _fit(child)
    spec = node.spec if node.kind == "cond" else None
    if spec is not None and node.op not in spec.ops:
        node.op = _first_op(spec)


def _first_op(spec: Any) -> str:
    return "gte" if "gte" in spec.ops else spec.ops[0]


def _refit(node: Node) -> None:
    """The condition's field was just changed from ``was``: a value typed for a field of
    another kind (an amount, and now a store list) is dropped, with the operator, and a
    window the new field does not take."""
    spec = node.spec
    if spec is None or node.was == node.field:
        return
    if node.was not in FIELDS or _value_kind(node.was) != _value_kind(node.field):
        node.op, node.values, node.value2 = _first_op(spec), [], ""
    if not spec.window:
        node.window_days = ""


def _value_kind(field: str) -> tuple[str, str]:
    """What a field's values look like: its type, and the list they are picked from."""
    return FIELDS[field].kind, CHOICE_FIELDS.get(field, "")


# -- the tree to a rule --------------------------------------------------------------------

def to_rule(node: Node) -> dict[str, Any] | None:
    """The rule as the API takes it, values typed as far as they read (``"12"`` to 12 for
    a number field) and otherwise left as typed for the checker to name."""
    if node.kind in ("all", "any"):
        return {node.kind: [to_rule(c) for c in node.children]}
    if node.kind == "not":
        return {"not": to_rule(node.children[0]) if node.children else None}
    spec = node.spec
    rule: dict[str, Any] = {"field": node.field, "op": node.op}
    if node.op == "in":
        parts = [p.strip() for v in node.values for p in (v.split(",") if _comma(node) else [v])]
        rule["value"] = [_typed(spec, p) for p in parts if p]
    elif node.op == "between":
        rule["value"] = [_typed(spec, node.values[0] if node.values else ""),
                         _typed(spec, node.value2)]
    else:
        rule["value"] = _typed(spec, node.values[0] if node.values else "")
    if node.window_days:
        days = node.window_days
        rule["window_days"] = int(days) if _INT.fullmatch(days) else days
    return rule


def _comma(node: Node) -> bool:
    """Whether the ``in`` values arrive as one comma-separated box (else as checkboxes)."""
    return node.field not in CHOICE_FIELDS


def _typed(spec: Any, raw: str) -> Any:
    if spec is None:
        return raw
    if spec.kind == "int":
        return int(raw) if _INT.fullmatch(raw) else raw
    if spec.kind == "bool":
        return {"true": True, "false": False}.get(raw, raw)
    return raw


# -- a stored rule to a tree ---------------------------------------------------------------

def from_rule(rule: Any, path: str = ROOT) -> Node:
    """A stored rule as the builder shows it; a lone condition at the top is shown in an
    outer ``all`` group (the same members)."""
    if path == ROOT and isinstance(rule, dict) and not set(rule) & set(GROUPS):
        return Node(ROOT, "all", [from_rule(rule, f"{ROOT}-0")])
    if isinstance(rule, dict):
        for kind in ("all", "any"):
            if isinstance(rule.get(kind), list):
                return Node(path, kind, [from_rule(r, f"{path}-{i}")
                                         for i, r in enumerate(rule[kind])])
        if "not" in rule:
            return Node(path, "not", [from_rule(rule["not"], f"{path}-0")])
        value = rule.get("value")
        node = Node(path, "cond", field=str(rule.get("field", "")), op=str(rule.get("op", "")),
                    window_days="" if rule.get("window_days") is None
                    else str(rule["window_days"]))
        if node.op == "between" and isinstance(value, list) and len(value) == 2:
            node.values, node.value2 = [_text(value[0])], _text(value[1])
        elif isinstance(value, list):
            node.values = [_text(v) for v in value] if not _comma(node) else [
                ", ".join(_text(v) for v in value)]
        else:
            node.values = [_text(value)]
        return node
    return new_tree() if path == ROOT else new_condition(path)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def to_form(node: Node) -> list[tuple[str, str]]:
    """The fields a browser sends for the tree (for scripts and benchmarks)."""
    if node.kind != "cond":
        return [(f"{node.path}.kind", node.kind)] + [
            pair for c in node.children for pair in to_form(c)]
    pairs = [(f"{node.path}.kind", "cond"), (f"{node.path}.field", node.field),
             (f"{node.path}.op", node.op), (f"{node.path}.value2", node.value2),
             (f"{node.path}.window_days", node.window_days)]
    return pairs + [(f"{node.path}.value", v) for v in node.values]


# -- errors at their node ------------------------------------------------------------------

_STEP = re.compile(r"\.(all|any)\[(\d+)\]|\.not")


def locate(error_path: str) -> tuple[str, str]:
    """``rule.all[1].value[0]`` -> (``r-1``, ``value``): the node an error names and the
    control in it (``field``, ``op``, ``value``, ``value2``, ``window_days``, or ``''``
    for the node as a whole)."""
    path, rest = ROOT, error_path[len("rule"):] if error_path.startswith("rule") else ""
    while True:
        m = _STEP.match(rest)
        if not m:
            break
        path += f"-{m.group(2)}" if m.group(2) is not None else "-0"
        rest = rest[m.end():]
    control = rest.lstrip(".")
    base, _, index = control.partition("[")
    if base == "value" and index == "1]":
        base = "value2"  # unless the node is an `in` (errors_by_node knows)
    return path, base if base in ("field", "op", "value", "value2", "window_days") else ""


def errors_by_node(errors: Mapping[str, list[str]], tree: Node) -> dict[str, dict[str, Any]]:
    """``{node path: {"messages": [...], "control": name}}``; an error naming no node of
    the tree (it should not happen) goes to the outer group."""
    out: dict[str, dict[str, Any]] = {}
    for error_path, messages in errors.items():
        path, control = locate(error_path)
        node = find(tree, path)
        if node is None:
            path, control = ROOT, ""
        elif control == "value2" and node.op != "between":
            control = "value"
        entry = out.setdefault(path, {"messages": [], "control": control})
        entry["messages"].extend(messages)
    return out
