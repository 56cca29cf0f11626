"""Paginating a ``select()``: ``{items: [...]}`` plus flask-smorest's ``X-Pagination``
header, counted in the database."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Select, func, select

from crm.db import db


def paginate(stmt: Select[Any], page: int, page_size: int) -> tuple[dict[str, Any], int, dict]:
    total = db.session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery()))
    window = stmt.limit(page_size).offset((page - 1) * page_size)
    if len(stmt.column_descriptions) == 1:  # one entity or column: the objects
        items: Any = db.session.scalars(window).all()
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
