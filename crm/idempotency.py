"""``Idempotency-Key`` for writes that change money or points (purchases have their own
key: store and receipt). A retried request with the same key and body gets the stored
answer; the same key with another body is a 409.

A view decorated with ``@idempotent_write`` does not commit: the decorator commits its
work and the stored answer together, so a crash leaves both or neither."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Response, current_app, make_response, request
from sqlalchemy import select

from crm.auth import current_key
from crm.db import db, insert_ignoring_conflicts
from crm.errors import Conflict, Invalid
from crm.models import IdempotencyKey

_KEY = re.compile(r"^[\x21-\x7e]{1,200}\Z")


def _claim(api_key_id: int, key: str, request_hash: str) -> IdempotencyKey | None:
    """Claim the key; return the earlier request's row if it was claimed already."""
    claimed = db.session.execute(
        insert_ignoring_conflicts(IdempotencyKey.__table__, "api_key_id", "key")
        .values(api_key_id=api_key_id, key=key, request_hash=request_hash)
        .returning(IdempotencyKey.id)
    ).scalar()
    if claimed is not None:
        return None
    return db.session.scalar(select(IdempotencyKey).where(
        IdempotencyKey.api_key_id == api_key_id, IdempotencyKey.key == key))


def idempotent_write(view: Callable[..., Any]) -> Callable[..., Response]:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Response:
        key = request.headers.get("Idempotency-Key")
        if key is None:
            response = make_response(view(*args, **kwargs))
            db.session.commit()
            return response
        if not _KEY.match(key):
            raise Invalid("Idempotency-Key is 1 to 200 printable characters.",
                          errors={"Idempotency-Key": ["1 to 200 printable characters."]})
        digest = hashlib.sha256(
            request.method.encode() + b" " + request.path.encode() + b"\n"
            + request.get_data()
        ).hexdigest()
        earlier = _claim(current_key().id, key, digest)
        if earlier is not None:
            if earlier.request_hash != digest:
                raise Conflict("This Idempotency-Key was used for a different request.")
            db.session.rollback()
            replay = current_app.response_class(
                earlier.response_body, status=earlier.status_code, mimetype="application/json"
            )
            replay.headers["Idempotent-Replayed"] = "true"
            return replay
        response = make_response(view(*args, **kwargs))
        db.session.execute(
            IdempotencyKey.__table__.update()
            .where(IdempotencyKey.api_key_id == current_key().id, IdempotencyKey.key == key)
            .values(status_code=response.status_code,
                    response_body=response.get_data(as_text=True))
        )
        db.session.commit()
        return response

    return wrapper
