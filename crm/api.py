"""The flask-smorest Api: OpenAPI 3 at /api/openapi.json and Swagger UI at /api/docs,
whose assets are served from the swagger-ui-bundle package (no CDN)."""

from __future__ import annotations

import json
from typing import Any

import flask
import flask_smorest
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.ext.marshmallow.common import resolve_schema_cls
from flask import Flask, Response, send_from_directory
from marshmallow import RAISE
from swagger_ui_bundle import swagger_ui_path
from webargs.flaskparser import FlaskParser
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter

from crm.errors import http_problem
from crm.schemas import ProblemSchema

API_CONFIG: dict[str, Any] = {
    "API_TITLE": "CRM and loyalty",
    "API_VERSION": "v1",
    "OPENAPI_VERSION": "3.0.3",
    "OPENAPI_URL_PREFIX": "/api",
    "OPENAPI_JSON_PATH": "openapi.json",
    "OPENAPI_SWAGGER_UI_PATH": "docs",
    "OPENAPI_SWAGGER_UI_URL": "/api/docs/assets/",
    "API_SPEC_OPTIONS": {
        "security": [{"bearerAuth": []}],
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}
        },
        "info": {
            "description": "Errors are application/problem+json (RFC 9457). "
            "Send 'Authorization: Bearer <key>'."
        },
    },
}



class Api(flask_smorest.Api):
    ERROR_SCHEMA = ProblemSchema

    def handle_http_exception(self, error: HTTPException) -> Response:  # type: ignore[override]
        return http_problem(error)


class _Parser(FlaskParser):
    # Unknown fields are refused everywhere, query strings included: a misspelt filter
    # must not silently return everything.
    DEFAULT_UNKNOWN_BY_LOCATION = dict.fromkeys(
        FlaskParser.DEFAULT_UNKNOWN_BY_LOCATION, RAISE
    )

    def _raw_load_json(self, req: Any) -> Any:
        try:
            return super()._raw_load_json(req)
        except RecursionError:  # nested about a thousand levels deep
            self._handle_invalid_json_error(
                json.JSONDecodeError("Nested too deeply.", "", 0), req)
        except ValueError as e:  # e.g. an integer of more than 4300 digits
            if isinstance(e, json.JSONDecodeError):
                raise
            self._handle_invalid_json_error(json.JSONDecodeError(str(e), "", 0), req)


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = _Parser()

    def arguments(self, schema: Any, *args: Any, **kwargs: Any) -> Any:
        # One schema instance per endpoint, made here: given a class, webargs would
        # build a new schema (and its nested ones) for every request.
        return super().arguments(schema() if isinstance(schema, type) else schema,
                                 *args, **kwargs)


class IdConverter(IntegerConverter):
    """``<id:name>``: a positive id that fits a BIGINT; anything else is a 404, not a
    database overflow."""

    def __init__(self, url_map: Any) -> None:
        super().__init__(url_map, min=1, max=2**63 - 1)


def schema_name(schema: Any) -> str:
    """OpenAPI component names: the class name less "Schema", "Patch" for partial ones."""
    cls = resolve_schema_cls(schema)
    name = cls.__name__.removesuffix("Schema")
    return name + "Patch" if getattr(schema, "partial", False) else name



docs_assets = flask.Blueprint("docs_assets", __name__)


@docs_assets.get("/api/docs/assets/<path:filename>")
def docs_asset(filename: str) -> Response:
    return send_from_directory(swagger_ui_path, filename, max_age=86400)


def init_api(app: Flask) -> Api:
    """The app's own Api (one per app: a second app in the same process, as the tests
    make, must not reset the first one's OpenAPI document)."""
    for key, value in API_CONFIG.items():
        app.config.setdefault(key, value)
    app.url_map.converters["id"] = IdConverter
    api = Api(spec_kwargs={
        "marshmallow_plugin": MarshmallowPlugin(schema_name_resolver=schema_name)})
    api.init_app(app)
    app.extensions["api"] = api
    app.register_blueprint(docs_assets)
    return api


def api_of(app: Flask) -> Api:
    """The Api ``init_api`` made for ``app``, to register blueprints with."""
    return app.extensions["api"]
