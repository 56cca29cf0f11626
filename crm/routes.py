"""HTTP endpoints for stores, API keys and customers: parse, call the service, commit."""

from __future__ import annotations

from typing import Any

from flask import jsonify
from flask.views import MethodView

from crm import (
    access,
    alerts,
    audit,
    customers,
    duplicates,
    keys,
    merging,
    privacy,
    stores,
    sync,
    timeline,
)
from crm.api import Blueprint, any_of
from crm.auth import actor_of, current_key, require, source_of
from crm.db import db
from crm.pagination import paginate
from crm.schemas import (
    AlertPageSchema,
    AlertQuerySchema,
    AlertSchema,
    ApiKeyCreatedSchema,
    ApiKeyCreateSchema,
    ApiKeyPageSchema,
    ApiKeyRotateSchema,
    AuditPageSchema,
    AuditQuerySchema,
    ConsentInSchema,
    ConsentStateSchema,
    CustomerCreateSchema,
    CustomerInSchema,
    CustomerMaskedPageSchema,
    CustomerMaskedSchema,
    CustomerPageSchema,
    CustomerQuerySchema,
    CustomerSchema,
    DuplicatePageSchema,
    ErasedSchema,
    MergedCustomerSchema,
    MergeInSchema,
    MergeSchema,
    PageArgs,
    ResolveInSchema,
    StorePageSchema,
    StoreSchema,
    SyncInSchema,
    SyncOutSchema,
    TimelinePageSchema,
    UnmergeInSchema,
)

stores_blp = Blueprint("stores", __name__, description="Shops and the web store")
keys_blp = Blueprint("api-keys", __name__, description="Clients' credentials (admin)")
customers_blp = Blueprint("customers", __name__, description="One record per person")
audit_blp = Blueprint("audit", __name__,
                      description="The append-only, hash-chained audit log (admin)")
alerts_blp = Blueprint("security-alerts", __name__,
                       description="Fraud and intrusion alerts (admin)")


@stores_blp.route("")
class Stores(MethodView):
    @require()
    @stores_blp.arguments(PageArgs, location="query")
    @stores_blp.response(200, StorePageSchema)
    def get(self, args: dict[str, Any]) -> Any:
        return paginate(stores.list_stores(), **args)

    @require("admin")
    @stores_blp.arguments(StoreSchema)
    @stores_blp.response(201, StoreSchema)
    def post(self, data: dict[str, Any]) -> Any:
        store = stores.create_store(data)
        db.session.commit()
        return store


@stores_blp.route("/<code>")
class StoreByCode(MethodView):
    @require()
    @stores_blp.response(200, StoreSchema)
    def get(self, code: str) -> Any:
        return stores.get_store(code)

    @require("admin")
    @stores_blp.arguments(StoreSchema(partial=True))
    @stores_blp.response(200, StoreSchema)
    def patch(self, data: dict[str, Any], code: str) -> Any:
        store = stores.update_store(code, data)
        db.session.commit()
        return store


@keys_blp.route("")
class ApiKeys(MethodView):
    @require("admin")
    @keys_blp.arguments(PageArgs, location="query")
    @keys_blp.response(200, ApiKeyPageSchema)
    def get(self, args: dict[str, Any]) -> Any:
        return paginate(keys.list_keys(), **args)

    @require("admin")
    @keys_blp.arguments(ApiKeyCreateSchema)
    @keys_blp.response(201, ApiKeyCreatedSchema)
    def post(self, data: dict[str, Any]) -> Any:
        row, key = keys.create_key(data["name"], data["scopes"], data["store_code"],
                                   data["expires_at"], data["allowed_ips"])
        db.session.commit()
        row.key = key  # not a column: the key is answered once and never stored
        return row


@keys_blp.route("/<id:key_id>/rotate")
class RotateApiKey(MethodView):
    @require("admin")
    @keys_blp.arguments(ApiKeyRotateSchema)
    @keys_blp.response(201, ApiKeyCreatedSchema)
    def post(self, data: dict[str, Any], key_id: int) -> Any:
        """A new key for the same client; the old one works for the overlap."""
        _, row, key = keys.rotate_key(key_id, data["overlap_hours"], data["expires_at"])
        db.session.commit()
        row.key = key
        return row


@keys_blp.route("/<id:key_id>")
class ApiKeyById(MethodView):
    @require("admin")
    @keys_blp.response(204)
    def delete(self, key_id: int) -> None:
        keys.revoke_key(key_id)
        db.session.commit()


def _masked(body: dict[str, Any], headers: dict[str, str] | None = None,
            status: int = 200) -> Any:
    """A till's answer: the masked view, already dumped (it bypasses the full schema)."""
    response = jsonify(body)
    response.status_code = status
    response.headers.update(headers or {})
    return response


@customers_blp.route("")
class Customers(MethodView):
    @require("pos", "shop", "marketing")
    @customers_blp.arguments(CustomerQuerySchema, location="query")
    @customers_blp.response(200, CustomerPageSchema)
    @customers_blp.alt_response(200, schema=any_of(CustomerPageSchema, CustomerMaskedPageSchema),
                                description="The customers found (a till: masked profiles).")
    def get(self, args: dict[str, Any]) -> Any:
        key = current_key()
        access.check_till_search(key, args)
        page, page_size = args.pop("page"), args.pop("page_size")
        body, status, headers = paginate(customers.search_customers(args), page, page_size)
        customers.with_profile_extras(body["items"])
        if not access.sees_personal_data(key):
            return _masked(CustomerMaskedPageSchema().dump(body), headers)
        return body, status, headers

    @require("pos", "shop")
    @customers_blp.arguments(CustomerCreateSchema)
    @customers_blp.response(201, CustomerSchema)
    @customers_blp.alt_response(201, schema=any_of(CustomerSchema, CustomerMaskedSchema),
                                description="The new customer (a till: the masked profile).")
    def post(self, data: dict[str, Any]) -> Any:
        key = current_key()
        customer = customers.create_customer(data, source_of(key))
        db.session.commit()
        customer = customers.with_profile_extras([customer])[0]
        if not access.sees_personal_data(key):
            return _masked(CustomerMaskedSchema().dump(customer), status=201)
        return customer


@customers_blp.route("/<id:customer_id>")
class CustomerById(MethodView):
    @require("pos", "shop", "marketing")
    @customers_blp.response(200, CustomerSchema)
    @customers_blp.alt_response(200, schema=any_of(CustomerSchema, CustomerMaskedSchema,
                                                    MergedCustomerSchema),
                                description="The profile (a till: masked), or, for a record "
                                "merged into another, {id, merged_into}.")
    def get(self, customer_id: int) -> Any:
        customer = customers.get_customer(customer_id)
        if customer.merged_into_id is not None:
            return jsonify(MergedCustomerSchema().dump(customer))
        customer = customers.with_profile_extras([customer])[0]
        if not access.sees_personal_data(current_key()):
            return _masked(CustomerMaskedSchema().dump(customer))
        return customer

    @require("admin")
    @customers_blp.response(200, ErasedSchema)
    def delete(self, customer_id: int) -> Any:
        customer = privacy.erase(customer_id, actor_of(current_key()))
        db.session.commit()
        return customer

    @require("shop")
    @customers_blp.arguments(CustomerInSchema(partial=True))
    @customers_blp.response(200, CustomerSchema)
    def patch(self, data: dict[str, Any], customer_id: int) -> Any:
        customer = customers.update_customer(customer_id, data, source_of(current_key()))
        db.session.commit()
        return customers.with_profile_extras([customer])[0]


@customers_blp.route("/sync")
class Sync(MethodView):
    @require("shop")
    @customers_blp.arguments(SyncInSchema)
    @customers_blp.response(200, SyncOutSchema)
    def post(self, data: dict[str, Any]) -> Any:
        results = sync.sync_members(data["customers"], source_of(current_key()))
        db.session.commit()
        return {"results": results}


@customers_blp.route("/<id:customer_id>/consent")
class Consent(MethodView):
    @require("shop", "pos")
    @customers_blp.arguments(ConsentInSchema)
    @customers_blp.response(200, ConsentStateSchema)
    def put(self, data: dict[str, Any], customer_id: int) -> Any:
        key = current_key()
        source = data.pop("source", None) or source_of(key)
        state = customers.set_consent(customer_id, data, source, key.store)
        db.session.commit()
        return state


@customers_blp.route("/<id:customer_id>/merge")
class Merge(MethodView):
    @require("admin")
    @customers_blp.arguments(MergeInSchema)
    @customers_blp.response(200, MergeSchema)
    def post(self, data: dict[str, Any], customer_id: int) -> Any:
        record = merging.merge(customer_id, data["source_customer_id"],
                               actor_of(current_key()), data["force"])
        db.session.commit()
        return record


@customers_blp.route("/<id:customer_id>/unmerge")
class Unmerge(MethodView):
    @require("admin")
    @customers_blp.arguments(UnmergeInSchema)
    @customers_blp.response(200, MergeSchema)
    def post(self, data: dict[str, Any], customer_id: int) -> Any:
        record = merging.unmerge(customer_id, data["source_customer_id"],
                                 actor_of(current_key()))
        db.session.commit()
        return record


@customers_blp.route("/<id:customer_id>/export")
class Export(MethodView):
    @require("admin")
    @customers_blp.response(200)
    def get(self, customer_id: int) -> Any:
        data = privacy.export(customer_id, actor_of(current_key()))
        db.session.commit()
        return jsonify(data)


@customers_blp.route("/<id:customer_id>/timeline")
class Timeline(MethodView):
    @require("shop", "marketing")
    @customers_blp.arguments(PageArgs, location="query")
    @customers_blp.response(200, TimelinePageSchema)
    def get(self, args: dict[str, Any], customer_id: int) -> Any:
        customers.get_customer(customer_id)
        return timeline.page(privacy.records_of(customer_id), **args)


@customers_blp.route("/<id:customer_id>/duplicates")
class Duplicates(MethodView):
    @require("marketing")
    @customers_blp.response(200, DuplicatePageSchema)
    def get(self, customer_id: int) -> Any:
        customers.get_customer(customer_id)
        matches = duplicates.find([customer_id])[customer_id]
        return {"items": [{"customer": m.customer, "score": m.score, "reasons": m.reasons}
                          for m in matches]}


@audit_blp.route("")
class AuditLog(MethodView):
    @require("admin")
    @audit_blp.arguments(AuditQuerySchema, location="query")
    @audit_blp.response(200, AuditPageSchema)
    def get(self, args: dict[str, Any]) -> Any:
        page, page_size = args.pop("page"), args.pop("page_size")
        return paginate(audit.search(args), page, page_size)


@alerts_blp.route("")
class Alerts(MethodView):
    @require("admin")
    @alerts_blp.arguments(AlertQuerySchema, location="query")
    @alerts_blp.response(200, AlertPageSchema)
    def get(self, args: dict[str, Any]) -> Any:
        status = args.pop("status", None)
        return paginate(alerts.list_alerts(status), **args)


@alerts_blp.route("/<id:alert_id>/resolve")
class ResolveAlert(MethodView):
    @require("admin")
    @alerts_blp.arguments(ResolveInSchema)
    @alerts_blp.response(200, AlertSchema)
    def post(self, data: dict[str, Any], alert_id: int) -> Any:
        alert = alerts.resolve_alert(alert_id, actor_of(current_key()), data.get("resolution"))
        db.session.commit()
        return alert
