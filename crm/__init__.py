"""The CRM platform: app factory, configuration, database, auth, errors, OpenAPI, stores
and customer records. Feature packages (loyalty, campaigns) plug in through init_app."""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask
from flask_migrate import Migrate

from crm import config as config_module
from crm.json_provider import OrjsonProvider

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def _render_item(type_: str, obj: Any, _context: Any) -> str | bool:
    """Autogenerate writes our UTCDateTime as the plain column type it stands for."""
    from crm.db import DecimalText, UTCDateTime

    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    if type_ == "type" and isinstance(obj, DecimalText):
        return "sa.String(length=32)"
    return False


migrate = Migrate(render_as_batch=True, compare_type=True, render_item=_render_item)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    instance_path = (config or {}).get("INSTANCE_PATH") or os.environ.get("INSTANCE_PATH")
    from crm.transactions import RetryingFlask

    app = RetryingFlask(__name__, instance_path=instance_path or None)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    app.config.update(config_module.load(Path(app.instance_path), config))
    app.json = OrjsonProvider(app)  # answers keep their fields' order

    from crm import pii, sqlite_checkpoints
    from crm.api import init_api
    from crm.auth import load_key
    from crm.cli import register_cli
    from crm.db import db, write_intent
    from crm.errors import (
        refuse_oversized_request,
        refuse_unstorable_text,
        register_error_handlers,
    )
    from crm.health import health
    from crm.limits import init_limits
    from crm.observability import init_observability
    from crm.routes import alerts_blp, audit_blp, customers_blp, keys_blp, stores_blp
    from crm.web_security import init_web_security

    pii.init_app(app)  # the key ring, before anything reads or writes personal data
    db.init_app(app)
    with app.app_context():
        sqlite_checkpoints.init_app(app, db.engine)
    migrate.init_app(app, db, directory=str(MIGRATIONS))

    @app.before_request
    def _transaction_kind() -> None:
        from flask import request

        write_intent.set(request.method not in ("GET", "HEAD", "OPTIONS"))

    init_observability(app)
    init_web_security(app)
    app.before_request(refuse_oversized_request)
    app.before_request(refuse_unstorable_text)
    app.before_request(load_key)  # before the limiter, which counts per key
    init_limits(app)
    api = init_api(app)
    register_error_handlers(app)
    app.register_blueprint(health)
    api.register_blueprint(stores_blp, url_prefix="/api/v1/stores")
    api.register_blueprint(keys_blp, url_prefix="/api/v1/api-keys")
    api.register_blueprint(customers_blp, url_prefix="/api/v1/customers")
    api.register_blueprint(alerts_blp, url_prefix="/api/v1/security/alerts")
    api.register_blueprint(audit_blp, url_prefix="/api/v1/audit")
    register_cli(app)

    for name in app.config["FEATURE_PACKAGES"]:
        importlib.import_module(name).init_app(app)
    return app
