"""HTTP endpoints for outgoing webhooks (admin): endpoints, their deliveries, replay."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from campaigns import hooks
from campaigns.schemas import (
    WebhookDeliveryPageSchema,
    WebhookDeliveryQuerySchema,
    WebhookDeliverySchema,
    WebhookEndpointCreatedSchema,
    WebhookEndpointPageSchema,
    WebhookEndpointSchema,
    WebhookRecoveredSchema,
    WebhookRecoverSchema,
    WebhookTestSchema,
)
from crm.api import Blueprint
from crm.auth import require
from crm.db import db
from crm.pagination import paginate
from crm.schemas import PageArgs

hooks_blp = Blueprint("webhook-endpoints", __name__,
                      description="Outgoing webhooks (Standard Webhooks; admin)")


@hooks_blp.route("/webhook-endpoints")
class Endpoints(MethodView):
    @require("admin")
    @hooks_blp.arguments(PageArgs, location="query")
    @hooks_blp.response(200, WebhookEndpointPageSchema)
    def get(self, args: dict[str, Any]) -> Any:
        return paginate(hooks.list_endpoints(), **args)

    @require("admin")
    @hooks_blp.arguments(WebhookEndpointSchema)
    @hooks_blp.response(201, WebhookEndpointCreatedSchema)
    def post(self, data: dict[str, Any]) -> Any:
        endpoint = hooks.create_endpoint(data)
        db.session.commit()
        return endpoint


@hooks_blp.route("/webhook-endpoints/<id:endpoint_id>")
class EndpointById(MethodView):
    @require("admin")
    @hooks_blp.response(200, WebhookEndpointSchema)
    def get(self, endpoint_id: int) -> Any:
        return hooks.get_endpoint(endpoint_id)

    @require("admin")
    @hooks_blp.arguments(WebhookEndpointSchema(partial=True))
    @hooks_blp.response(200, WebhookEndpointSchema)
    def patch(self, data: dict[str, Any], endpoint_id: int) -> Any:
        endpoint = hooks.update_endpoint(endpoint_id, data)
        db.session.commit()
        return endpoint

    @require("admin")
    @hooks_blp.response(204)
    def delete(self, endpoint_id: int) -> None:
        hooks.delete_endpoint(endpoint_id)
        db.session.commit()


@hooks_blp.route("/webhook-endpoints/<id:endpoint_id>/rotate-secret")
class RotateSecret(MethodView):
    @require("admin")
    @hooks_blp.response(200, WebhookEndpointCreatedSchema)
    def post(self, endpoint_id: int) -> Any:
        endpoint = hooks.rotate_secret(endpoint_id)
        db.session.commit()
        return endpoint


@hooks_blp.route("/webhook-endpoints/<id:endpoint_id>/test")
class SendTest(MethodView):
    @require("admin")
    @hooks_blp.response(202, WebhookTestSchema)
    def post(self, endpoint_id: int) -> Any:
        event = hooks.send_test(endpoint_id)
        db.session.commit()
        return {"event_id": event.id, "webhook_id": event.msg_id}


@hooks_blp.route("/webhook-endpoints/<id:endpoint_id>/deliveries")
class Deliveries(MethodView):
    @require("admin")
    @hooks_blp.arguments(WebhookDeliveryQuerySchema, location="query")
    @hooks_blp.response(200, WebhookDeliveryPageSchema)
    def get(self, args: dict[str, Any], endpoint_id: int) -> Any:
        return paginate(hooks.list_deliveries(endpoint_id, args.get("status")),
                        args["page"], args["page_size"])


@hooks_blp.route("/webhook-endpoints/<id:endpoint_id>/recover")
class Recover(MethodView):
    @require("admin")
    @hooks_blp.arguments(WebhookRecoverSchema)
    @hooks_blp.response(200, WebhookRecoveredSchema)
    def post(self, data: dict[str, Any], endpoint_id: int) -> Any:
        queued = hooks.recover(endpoint_id, data["since"])
        db.session.commit()
        return {"queued": queued}


@hooks_blp.route("/webhook-deliveries/<id:delivery_id>/resend")
class Resend(MethodView):
    @require("admin")
    @hooks_blp.response(202, WebhookDeliverySchema)
    def post(self, delivery_id: int) -> Any:
        delivery = hooks.resend(delivery_id)
        db.session.commit()
        return delivery
