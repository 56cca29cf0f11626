"""HTTP endpoints of the catalogue and of recommendations."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from crm.api import Blueprint
from crm.auth import current_key, require
from crm.db import db
from crm.errors import Forbidden
from crm.pagination import paginate
from crm.stores import get_store
from loyalty import products, recommendations
from loyalty.schemas import (
    ProductArgs,
    ProductPageSchema,
    ProductSchema,
    ProductSyncInSchema,
    ProductSyncOutSchema,
    RecommendationArgs,
    RecommendationListSchema,
)

products_blp = Blueprint("products", __name__, description="The product catalogue")
recommendations_blp = Blueprint("recommendations", __name__,
                                description="Personal recommendations")


@products_blp.route("/products/sync")
class ProductSync(MethodView):
    @require("shop", "admin")
    @products_blp.arguments(ProductSyncInSchema)
    @products_blp.response(200, ProductSyncOutSchema)
    def post(self, data: dict[str, Any]) -> Any:
        results = products.sync_products(data["products"])
        db.session.commit()
        return {"results": results}


@products_blp.route("/products")
class Products(MethodView):
    @require()
    @products_blp.arguments(ProductArgs, location="query")
    @products_blp.response(200, ProductPageSchema)
    def get(self, args: dict[str, Any]) -> Any:
        return paginate(products.list_products(args.pop("category", None),
                                               args.pop("q", None)), **args)


@products_blp.route("/products/<string:sku>")
class ProductBySku(MethodView):
    @require()
    @products_blp.response(200, ProductSchema)
    def get(self, sku: str) -> Any:
        return products.get_product(sku)


@products_blp.route("/products/<string:sku>/related")
class RelatedProducts(MethodView):
    @require("shop", "pos")
    @products_blp.arguments(RecommendationArgs(only=("limit",)), location="query")
    @products_blp.response(200, RecommendationListSchema)
    def get(self, args: dict[str, Any], sku: str) -> Any:
        return {"items": recommendations.related(sku, args["limit"])}


@recommendations_blp.route("/<id:customer_id>/recommendations")
class CustomerRecommendations(MethodView):
    @require("pos", "shop")
    @recommendations_blp.arguments(RecommendationArgs, location="query")
    @recommendations_blp.response(200, RecommendationListSchema)
    def get(self, args: dict[str, Any], customer_id: int) -> Any:
        key = current_key()
        code = args.get("store_code")
        store: Any = None
        if key.store is not None and not {"shop", "admin"} & set(key.scope_list):
            if code not in (None, key.store.code):
                raise Forbidden(f"This till's key is for store {key.store.code}.")
            store = key.store
        elif code is not None:
            store = get_store(code)
        return {"items": recommendations.for_customer(customer_id, args["limit"], store)}
