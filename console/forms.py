"""HTML forms driven by the API's own marshmallow schemas: the same validation as the
API, errors shown beside the field they name, and nothing saved when there is one.

``Form(schema)`` describes the fields to render; ``submit(schema, form, action)`` loads
the posted form through the schema, calls ``action(data)`` (a service function) and
commits, or rolls back and answers the errors by field."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from marshmallow import Schema, ValidationError, fields, missing, validate

from crm.db import db
from crm.errors import DomainError


@dataclass
class Field:
    name: str
    label: str
    kind: str  # text, number, checkbox, select, list, date, datetime
    required: bool
    help: str
    choices: list[str] = field(default_factory=list)


def _kind(f: fields.Field) -> tuple[str, list[str]]:
    for v in f.validators if hasattr(f, "validators") else []:
        if isinstance(v, validate.OneOf):
            return "select", [str(c) for c in v.choices]
    if isinstance(f, fields.Boolean):
        return "checkbox", []
    if isinstance(f, fields.List):
        return "list", []
    if isinstance(f, fields.Integer):
        return "number", []
    if isinstance(f, fields.DateTime):
        return "datetime", []
    if isinstance(f, fields.Date):
        return "date", []
    return "text", []


def describe(schema: Schema, only: list[str] | None = None,
             labels: Mapping[str, str] | None = None) -> list[Field]:
    out = []
    for name in only or list(schema.fields):
        f = schema.fields[name]
        if f.dump_only or isinstance(f, fields.Nested):
            continue
        kind, choices = _kind(f)
        help_text = f.metadata.get("description", "")
        if kind == "list":
            help_text = (help_text + " " if help_text else "") + "Separate with commas."
        label = (labels or {}).get(name) or name.replace("_", " ").capitalize()
        out.append(Field(name, label, kind, bool(f.required), help_text, choices))
    return out


def _value(f: fields.Field, raw: str) -> Any:
    raw = raw.strip()
    if isinstance(f, fields.List):
        parts = [p.strip() for p in raw.split(",") if p.strip()]
        if isinstance(f.inner, fields.Integer):
            return [int(p) if p.lstrip("-").isdigit() else p for p in parts]
        return parts
    if isinstance(f, fields.Integer):
        return int(raw) if raw.lstrip("-").isdigit() else raw
    return raw


def parse(schema: Schema, form: Mapping[str, str], names: list[str]) -> dict[str, Any]:
    """The form's values as the API would have received them as JSON: empty fields are
    null (or absent, where null is not allowed), checkboxes true or false."""
    data: dict[str, Any] = {}
    for name in names:
        f = schema.fields[name]
        if isinstance(f, fields.Boolean):
            data[name] = form.get(name) in ("on", "true", "1")
            continue
        raw = form.get(name, "")
        if raw.strip() == "" and not isinstance(f, fields.List):
            if f.allow_none:
                data[name] = None
            continue
        data[name] = _value(f, raw)
    return data


def _flat(messages: Any) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    if isinstance(messages, dict):
        for name, msgs in messages.items():
            if isinstance(msgs, dict):  # a list field's item errors: {index: [...]}
                msgs = [m for sub in msgs.values() for m in (sub if isinstance(sub, list)
                                                              else [str(sub)])]
            out[str(name)] = [str(m) for m in (msgs if isinstance(msgs, list) else [msgs])]
    else:
        out["_schema"] = [str(m) for m in messages]
    return out


@dataclass
class Outcome:
    ok: bool
    result: Any = None
    errors: dict[str, list[str]] = field(default_factory=dict)
    message: str = ""


def submit(schema: Schema, form: Mapping[str, str], action: Callable[[dict[str, Any]], Any],
           names: list[str] | None = None) -> Outcome:
    """Validate with ``schema``, run ``action`` and commit; on any error roll back and
    answer the errors by field (``_schema`` for the form as a whole)."""
    names = names or [d.name for d in describe(schema)]
    try:
        data = schema.load(parse(schema, form, names))
    except ValidationError as e:
        return Outcome(False, errors=_flat(e.messages), message="Some fields are not valid.")
    try:
        result = action(data)
        db.session.commit()
    except DomainError as e:
        db.session.rollback()
        errors = _flat(e.extra.get("errors") or {})
        if "field" in e.extra and not errors:
            errors = {e.extra["field"]: [e.detail]}
        return Outcome(False, errors=errors, message=e.detail)
    return Outcome(True, result=result)


def defaults(schema: Schema) -> dict[str, Any]:
    """What a new form shows: the schema's defaults (a checkbox that defaults to true
    starts checked, since an unchecked box is sent as false)."""
    out = {}
    for name, f in schema.fields.items():
        value = f.load_default
        if value is not missing and not callable(value):
            out[name] = str(value) if isinstance(value, Decimal) else value
    return out


def values_of(schema: Schema, obj: Any) -> dict[str, Any]:
    """An object's values as form fields show them (lists joined with commas)."""
    dumped = schema.dump(obj)
    return {k: ", ".join(str(x) for x in v) if isinstance(v, list) else v
            for k, v in dumped.items()}
