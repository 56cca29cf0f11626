"""Helpers shared by the tests of every package: a till posting sales, times in the
past, and the ledger check."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flask.testing import FlaskClient

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


def ago(**kwargs: float) -> datetime:
    return datetime.now(UTC) - timedelta(**kwargs)


def verify_clean(runner) -> None:
    result = runner.invoke(args=["loyalty", "verify"])
    assert result.exit_code == 0, result.output
