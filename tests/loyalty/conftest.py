"""Helpers for loyalty tests: a program in EUR, a store with a till key, members."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient

from crm.db import db
from loyalty import settings

_receipts = itertools.count(1)


@dataclass
class Till:
    client: FlaskClient
    headers: dict[str, str]
    store: str

    def buy(self, member: dict | None = None, total: str = "100.00", *,
            lines: list[dict] | None = None, expect: int | None = 201, **extra: Any) -> Any:
        when = extra.pop("occurred_at", datetime.now(UTC))
        body: dict[str, Any] = {
            "receipt_id": extra.pop("receipt_id", f"R{next(_receipts)}"),
            "occurred_at": when if isinstance(when, str) else when.isoformat(),
            "currency": extra.pop("currency", "EUR"),
            "total": total,
            "lines": lines if lines is not None else [
                {"sku": "SKU-1", "category": "food", "quantity": 1, "unit_price": total}],
            **extra,
        }
        if member is not None:
            body["customer"] = member
        r = self.client.post("/api/v1/purchases", headers=self.headers, json=body)
        if expect is not None:
            assert r.status_code == expect, r.get_json()
        return r

    def give_back(self, purchase_id: int, expect: int | None = 201, **body: Any) -> Any:
        body.setdefault("return_id", f"RET{next(_receipts)}")
        r = self.client.post(f"/api/v1/purchases/{purchase_id}/returns", headers=self.headers,
                             json=body)
        if expect is not None:
            assert r.status_code == expect, r.get_json()
        return r

    def points(self, customer_id: int) -> dict[str, Any]:
        r = self.client.get(f"/api/v1/customers/{customer_id}/points", headers=self.headers)
        assert r.status_code == 200, r.get_json()
        return r.get_json()


@pytest.fixture
def program(factory):
    """A program in EUR: 1 point per euro, a point worth 0.01, no pending, 365-day expiry."""
    row = settings.update_program({"currency": "EUR"})
    db.session.commit()
    return row


@pytest.fixture
def till(client, factory, program) -> Till:
    store = factory.store("PAR01", currency="EUR", timezone="Europe/Paris")
    return Till(client, factory.headers("pos", store=store.code), store.code)


@pytest.fixture
def admin(factory) -> dict[str, str]:
    return factory.headers("admin")


def ago(**kwargs: float) -> datetime:
    return datetime.now(UTC) - timedelta(**kwargs)


def verify_clean(runner) -> None:
    result = runner.invoke(args=["loyalty", "verify"])
    assert result.exit_code == 0, result.output
