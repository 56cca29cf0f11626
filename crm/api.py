"""The flask-smorest Api: OpenAPI 3 at /api/openapi.json and Swagger UI at /api/docs,
whose assets are served from the swagger-ui-bundle package (no CDN)."""

from __future__ import annotations

import http
import json
from typing import Any

import flask
import flask_smorest
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.ext.marshmallow.common import resolve_schema_cls
from flask import Flask, Response, send_from_directory
from flask_smorest.utils import prepare_response
from marshmallow import RAISE, ValidationError, missing
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



PROBLEM = "application/problem+json"


class Api(flask_smorest.Api):
    ERROR_SCHEMA = ProblemSchema

    def _register_responses(self) -> None:
        """flask-smorest's responses per status and its default error response, as
        they are answered: problem documents (crm.errors)."""
        for status in http.HTTPStatus:
            response: dict[str, Any] = {"description": status.phrase}
            if not (100 <= status < 200) and status not in (204, 304):
                response["schema"] = self.ERROR_SCHEMA
            prepare_response(response, self.spec, PROBLEM)
            self.spec.components.response(status.name, response, lazy=True)
        response = {"description": "Default error response", "schema": self.ERROR_SCHEMA}
        prepare_response(response, self.spec, PROBLEM)
        self.spec.components.response("DEFAULT_ERROR", response, lazy=True)

    def handle_http_exception(self, error: HTTPException) -> Response:  # type: ignore[override]
        return http_problem(error)


class _Parser(FlaskParser):
    # Unknown fields are refused everywhere, query strings included: a misspelt filter
    # must not silently return everything.
    DEFAULT_UNKNOWN_BY_LOCATION = dict.fromkeys(
        FlaskParser.DEFAULT_UNKNOWN_BY_LOCATION, RAISE
    )

    def load_json(self, req: Any, schema: Any) -> Any:
        # A PATCH is a JSON object of the fields to change: without one it is a 422,
        # not a 200 that changed nothing. (An empty object is a valid patch that
        # changes nothing, as in RFC 7396, and answers the resource as it is.)
        data = super().load_json(req, schema)
        if data is missing and req.method == "PATCH":
            raise ValidationError(
                "Send the fields to change as a JSON object (Content-Type: application/json).")
        return data

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


def any_of(*schemas: Any) -> dict[str, Any]:
    """A response documented as one of several shapes (the caller's key decides which):
    ``alt_response(200, schema=any_of(A, B))`` for a status that has more than one."""
    return {"anyOf": [schema() if isinstance(schema, type) else schema for schema in schemas]}


def schema_name(schema: Any) -> str:
    """OpenAPI component names: the class name less "Schema", "Patch" for partial ones."""
    cls = resolve_schema_cls(schema)
    name = cls.__name__.removesuffix("Schema")
    return name + "Patch" if getattr(schema, "partial", False) else name


def ecma_pattern(_converter: Any, _field: Any, ret: dict[str, Any], **_: Any
                 ) -> dict[str, Any]:
    """Patterns as OpenAPI reads them (ECMA-262): our validators end theirs with
    Python's ``\\Z`` (the very end, no newline before it), which is ECMA's ``$``."""
    if "pattern" in ret and ret["pattern"].endswith("\\Z"):
        return {"pattern": ret["pattern"][:-2] + "$"}
    return {}

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
    plugin = MarshmallowPlugin(schema_name_resolver=schema_name)
    api = Api(spec_kwargs={"marshmallow_plugin": plugin})
    api.init_app(app)
    plugin.converter.add_attribute_function(ecma_pattern)
    app.extensions["api"] = api
    app.register_blueprint(docs_assets)
    return api


def api_of(app: Flask) -> Api:
    """The Api ``init_api`` made for ``app``, to register blueprints with."""
    return app.extensions["api"]
