"""/healthz: the service answers and its database does."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from crm.db import db
from crm.errors import problem

health = Blueprint("health", __name__)
log = logging.getLogger("crm.health")


@health.get("/healthz", endpoint="healthz")
def healthz() -> Response:
    try:
        db.session.execute(text("SELECT 1"))
        db.session.rollback()
    except SQLAlchemyError as e:
        db.session.rollback()
        log.error("health check failed: %s", e)
        return problem(503, detail="The database does not answer.", slug="unhealthy",
                       database="unreachable")
    return jsonify(status="ok", database="ok")
