"""Stores: each has a code, a timezone (for quiet hours, birthdays, local days), a
channel and the currency its purchases are in."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select

from crm import audit
from crm.db import db
from crm.errors import Conflict, NotFound
from crm.keys import forget_callers
from crm.models import Store


def create_store(data: dict[str, Any]) -> Store:
    if db.session.scalar(select(Store.id).where(Store.code == data["code"])) is not None:
        raise Conflict(f"A store with the code {data['code']!r} exists already.")
    store = Store()
    _apply(store, data)
    db.session.add(store)
    db.session.flush()
    audit.record("create", "store", store.code, after=_audited(store))
    return store


def update_store(code: str, data: dict[str, Any]) -> Store:
    store = get_store(code)
    for fixed in ("code", "currency"):
        if fixed in data and data[fixed] != getattr(store, fixed):
            raise Conflict(f"A store's {fixed} cannot change: keys, receipts and amounts "
                           "refer to it.")
    before = _audited(store)
    _apply(store, data)
    db.session.flush()
    audit.record_change("update", "store", store.code, before, _audited(store))
    forget_callers()  # a till's key carries its store's time zone
    return store


def _audited(store: Store) -> dict[str, Any]:
    return {"name": store.name, "timezone": store.timezone, "channel": store.channel,
            "currency": store.currency, "quiet_hours": store.quiet_hours}


def _apply(store: Store, data: dict[str, Any]) -> None:
    for name, value in data.items():
        if name == "quiet_hours":
            store.quiet_start = value["start"] if value else None
            store.quiet_end = value["end"] if value else None
        else:
            setattr(store, name, value)


def get_store(code: str) -> Store:
    store = db.session.scalar(select(Store).where(Store.code == code))
    if store is None:
        raise NotFound(f"No store has the code {code!r}.")
    return store


def list_stores() -> Select[tuple[Store]]:
    return select(Store).order_by(Store.code)
