"""Test data made through the service functions, committed like a request would."""

from __future__ import annotations

import itertools
from typing import Any

from flask import Flask

from crm import customers, keys, stores
from crm.db import db
from crm.models import Customer, Store

_counter = itertools.count(1)


class Factory:
    def __init__(self, app: Flask) -> None:
        self.app = app

    def store(self, code: str | None = None, **fields: Any) -> Store:
        db.session.rollback()  # write in a fresh transaction, not after a stale read
        data = {"code": code or f"S{next(_counter):03d}", "name": "Test store",
                "timezone": "Europe/Paris", "channel": "store", "currency": "EUR"}
        data.update(fields)
        store = stores.create_store(data)
        db.session.commit()
        return store

    def key(self, *scopes: str, store: str | None = None) -> str:
        """A key with ``scopes`` (a pos key gets a store of its own unless given)."""
        if "pos" in scopes and store is None:
            store = self.store().code
        db.session.rollback()
        _, key = keys.create_key("test", list(scopes), store)
        db.session.commit()
        return key

    def headers(self, *scopes: str, store: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key(*scopes, store=store)}"}

    def customer(self, **fields: Any) -> Customer:
        db.session.rollback()
        n = next(_counter)
        data: dict[str, Any] = {"first_name": "Test", "last_name": f"Person{n}",
                                "email": f"person{n}@example.com"}
        data.update(fields)
        customer = customers.create_customer(data)
        db.session.commit()
        return customer
