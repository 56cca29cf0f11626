"""Paginating a ``select()``: ``{items: [...]}`` plus flask-smorest's ``X-Pagination``
header, counted in the database."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import Select, func, select

from crm.db import db


def paginate(stmt: Select[Any], page: int, page_size: int,
             shape: Callable[[Any], Any] | None = None) -> tuple[dict[str, Any], int, dict]:
    """One page of ``stmt``; ``shape`` turns each row into its item (default: the
    object, or a mapping when the statement has several columns)."""
    total = db.session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery()))
    window = stmt.limit(page_size).offset((page - 1) * page_size)
    if shape is not None:
        items: Any = [shape(row) for row in db.session.execute(window)]
    elif len(stmt.column_descriptions) == 1:  # one entity or column: the objects
        items = db.session.scalars(window).all()
    else:  # several columns: a mapping per row
        items = db.session.execute(window).mappings().all()
    pages = max(1, -(-total // page_size))
    meta: dict[str, int] = {
        "total": total,
        "total_pages": pages,
        "first_page": 1,
        "last_page": pages,
        "page": page,
    }
    if page > 1:
        meta["previous_page"] = min(page - 1, pages)
    if page < pages:
        meta["next_page"] = page + 1
    return {"items": items}, 200, {"X-Pagination": json.dumps(meta)}
