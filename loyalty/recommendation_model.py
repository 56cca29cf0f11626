"""The recommendation model's refresh (loyalty/recommendations.py says what the model
is and how it is read): NumPy and SciPy are imported here only, so that they load in the
process that runs the job, not in every web worker.

The refresh streams the window's lines in customer order (one query), in chunks of
whole customers, and adds each chunk's co-occurrences (a sparse customers x skus matrix
``X``; ``X^T X``) into sparse sku x sku totals: memory grows with the number of skus
and pairs, never with the number of customers or lines. Erased customers' purchases are
left out, so an erasure leaves the model at the next refresh; merged records' purchases
belong to the survivor.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from flask import current_app
from scipy import sparse
from sqlalchemy import Select, delete, select, text

from crm.db import db, utcnow
from crm.models import Customer, Store
from crm.sql import bulk_insert
from loyalty.models import PopularProduct, Purchase, PurchaseLine, RelatedProduct

POPULARITY_DAMPING = 0.5
SOURCE_WEIGHT = 1.0
MIN_CUSTOMERS = 3  # a pair needs this many customers who bought both
NEIGHBOURS = 10  # kept per sku, by score
TOGETHER = 5  # also kept per sku: the most often in the same basket
POPULAR = 200  # kept per scope
CHUNK_ROWS = 200_000  # lines per chunk of the refresh (whole customers, whole baskets)


def refresh(now: datetime | None = None) -> dict[str, Any]:
    """Rebuild the model from the window's purchases (the caller commits)."""
    started = time.perf_counter()
    now = now or utcnow()
    since = now - timedelta(days=current_app.config["RECOMMEND_WINDOW_DAYS"])
    skus = list(db.session.scalars(select(PurchaseLine.sku).distinct()))
    index = {sku: n for n, sku in enumerate(skus)}
    size = len(skus)
    together_customers = sparse.csr_matrix((size, size), dtype=np.int64)
    together_baskets = sparse.csr_matrix((size, size), dtype=np.int64)
    sold: dict[int | None, np.ndarray] = defaultdict(lambda: np.zeros(size, dtype=np.int64))
    lines = 0
    for members, rows in _window_chunks(since):
        if not rows:
            continue
        lines += len(rows)
        customer, basket, store, sku = (np.asarray(c) for c in zip(*rows, strict=True))
        items = np.fromiter((index[s] for s in sku), dtype=np.int64, count=len(sku))
        together_baskets = together_baskets + _co_occurrence(basket, items, size)
        if members:
            together_customers = together_customers + _co_occurrence(customer, items, size)
        for store_id in np.unique(store):
            mine = store == store_id
            # baskets that hold the sku (a basket's lines of one sku count once)
            pairs = np.unique(np.stack([basket[mine], items[mine]]), axis=1)
            sold[int(store_id)] += np.bincount(pairs[1], minlength=size)
    related = _related_rows(skus, together_customers.tocsr(), together_baskets.tocsr())
    popular = _popular_rows(skus, sold)
    db.session.execute(delete(RelatedProduct))
    db.session.execute(delete(PopularProduct))
    bulk_insert(RelatedProduct.__table__, related)
    bulk_insert(PopularProduct.__table__, popular)
    db.session.flush()
    return {"lines": lines, "skus": size, "related": len(related), "popular": len(popular),
            "seconds": round(time.perf_counter() - started, 1)}


def _window_chunks(since: datetime) -> Iterator[tuple[bool, list[Any]]]:
    """(members?, rows of (customer, purchase, store, sku)) of the window's lines not
    wholly returned, streamed by one query each (a server-side cursor on PostgreSQL):
    members' in customer order (erased ones left out), then anonymous baskets."""
    p, line, c = Purchase, PurchaseLine, Customer
    base = (select(p.customer_id, p.id, p.store_id, line.sku)
            .join(line, line.purchase_id == p.id)
            .where(p.occurred_at >= since, line.quantity > line.returned_quantity))
    members = (base.join(c, c.id == p.customer_id).where(c.erased_at.is_(None))
               .order_by(p.customer_id))
    for rows in _chunked(members, 0):
        yield True, rows
    for rows in _chunked(base.where(p.customer_id.is_(None)).order_by(p.id), 1):
        yield False, rows


def _chunked(stmt: Select[Any], column: int) -> Iterator[list[Any]]:
    """The rows of ``stmt`` in lists of about CHUNK_ROWS, never splitting the rows of
    one value of ``column`` (a customer's, a basket's) between two lists."""
    chunk: list[Any] = []
    if db.engine.dialect.name == "postgresql":
        # A cursor's plan is chosen for its first rows by default (nested loops in
        # customer order); all of them are read: plan for that (hash joins and a sort).
        db.session.execute(text("SET LOCAL cursor_tuple_fraction = 1.0"))
    for part in db.session.execute(stmt.execution_options(yield_per=10_000)).partitions():
        chunk.extend(part)
        if len(chunk) >= CHUNK_ROWS:
            cut, last = len(chunk), chunk[-1][column]
            while cut and chunk[cut - 1][column] == last:
                cut -= 1
            if cut:
                yield chunk[:cut]
                chunk = chunk[cut:]
    if chunk:
        yield chunk


def _co_occurrence(owners: np.ndarray, items: np.ndarray, size: int) -> sparse.csr_matrix:
    """sku x sku: how many owners (customers or baskets) hold both (the diagonal: each)."""
    _, rows = np.unique(owners, return_inverse=True)
    holding = sparse.csr_matrix((np.ones(len(items), dtype=np.int64), (rows, items)),
                                shape=(rows.max() + 1, size))
    holding.sum_duplicates()
    holding.data[:] = 1
    return (holding.T @ holding).tocsr()


def _related_rows(skus: list[str], customers: sparse.csr_matrix,
                  baskets: sparse.csr_matrix) -> list[dict[str, Any]]:
    buyers = customers.diagonal().astype(np.float64)
    damped = np.power(np.maximum(buyers, 1), POPULARITY_DAMPING)
    customers.sort_indices()
    baskets.sort_indices()
    rows = []
    for i in range(len(skus)):
        lo, hi = customers.indptr[i], customers.indptr[i + 1]
        others, both = customers.indices[lo:hi], customers.data[lo:hi]
        keep = (others != i) & (both >= MIN_CUSTOMERS)
        others, both = others[keep], both[keep]
        if not len(others):
            continue
        scores = both / (buyers[i] ** SOURCE_WEIGHT * damped[others])
        b_lo, b_hi = baskets.indptr[i], baskets.indptr[i + 1]
        b_others, b_count = baskets.indices[b_lo:b_hi], baskets.data[b_lo:b_hi]
        in_baskets = np.zeros(len(others), dtype=np.int64)
        if len(b_others):
            at = np.minimum(np.searchsorted(b_others, others), len(b_others) - 1)
            in_baskets = np.where(b_others[at] == others, b_count[at], 0)
        chosen = set(np.argsort(-scores, kind="stable")[:NEIGHBOURS].tolist())
        chosen |= {n for n in np.argsort(-in_baskets, kind="stable")[:TOGETHER].tolist()
                   if in_baskets[n] > 0}
        rows.extend({"sku": skus[i], "other_sku": skus[others[n]],
                     "score": float(scores[n]), "customers": int(both[n]),
                     "baskets": int(in_baskets[n])} for n in sorted(chosen))
    return rows


def _popular_rows(skus: list[str], sold: dict[int | None, np.ndarray]
                  ) -> list[dict[str, Any]]:
    channels = dict(db.session.execute(select(Store.id, Store.channel)).all())
    scopes: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(len(skus), dtype=np.int64))
    for store_id, counts in sold.items():
        for scope in ("all", f"channel:{channels.get(store_id)}", f"store:{store_id}"):
            scopes[scope] += counts
    rows = []
    for scope, counts in scopes.items():
        best = [n for n in np.argsort(-counts, kind="stable")[:POPULAR] if counts[n] > 0]
        rows.extend({"scope": scope, "rank": rank, "sku": skus[n], "buyers": int(counts[n])}
                    for rank, n in enumerate(best, 1))
    return rows
