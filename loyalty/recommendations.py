"""Personal recommendations from purchase history, for the till, the shop and messages.

The model is item-to-item association, rebuilt by a job (loyalty/recommendation_model.py):
over the window (``RECOMMEND_WINDOW_DAYS``), for each pair of skus, how many customers bought both
(``C[i, j]``; ``C[i, i]`` = ``n_i``, the buyers of ``i``) and how many baskets held both.
Recommending ``j`` to someone who bought ``i`` weighs

    s(i -> j) = C[i, j] / (n_i ** SOURCE_WEIGHT * n_j ** POPULARITY_DAMPING)

which, for 1 and 0, is P(j | i); the popularity of ``j`` is damped (a
``SOURCE_WEIGHT`` above 1 would also make what everyone buys say less about a person;
bench.recommend found no gain in it). Without any co-purchase structure
``C[i, j] ~ n_i n_j / N`` and the ranking is popularity's; where buyers of ``i`` favour
``j``, ``j`` rises above what is merely popular. A person's score for ``j`` is the sum
over what they bought; the best contributor is the reason the cashier can say. Pairs
seen with fewer than ``MIN_CUSTOMERS`` customers are dropped (noise, and nobody's
single basket shows through). The popularity fallback (per store, per channel and
overall) fills the list for new or anonymous customers and for thin histories.

Answers are precomputed reads: the person's recent skus (the customer-time index), their
neighbours joined with the catalogue, and the popular rows of the store's scopes.
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from flask import current_app
from sqlalchemy import Select, bindparam, desc, func, select
from sqlalchemy.orm import aliased

from crm.db import any_of, db, utcnow
from crm.errors import NotFound
from crm.models import Customer
from crm.money import to_amount
from loyalty.models import PopularProduct, Product, Purchase, PurchaseLine, RelatedProduct

HISTORY_SKUS = 20  # a person's most recent skus that a recommendation starts from


# What an answer shows of a product, read as plain rows with the model's (ORM objects
# would cost more than the rest of the call).
PRODUCT_COLUMNS = (Product.sku, Product.name, Product.category, Product.price,
                   Product.currency, Product.image_url)
_source = aliased(Product, name="source")


class Item(NamedTuple):
    sku: str
    name: str
    category: str
    price: int
    currency: str
    image_url: str | None


def _neighbours_of(skus: Any) -> Select[Any]:
    """Each sku's neighbours that are active products, with their catalogue rows."""
    return (select(RelatedProduct.sku.label("source_sku"), RelatedProduct.score,
                   *PRODUCT_COLUMNS)
            .join(Product, Product.sku == RelatedProduct.other_sku)
            .where(skus, Product.active.is_(True)))


def _popular_in(scopes: Any, depth: Any) -> Select[Any]:
    return (select(PopularProduct.scope, *PRODUCT_COLUMNS)
            .join(Product, Product.sku == PopularProduct.sku)
            .where(scopes, PopularProduct.rank <= depth, Product.active.is_(True))
            .order_by(PopularProduct.scope, PopularProduct.rank))


@functools.cache
def _one_person() -> tuple[Select[Any], Select[Any], Select[Any]]:
    """The till's three reads, built once: the person's recent skus (the customer-time
    index), their neighbours (the model's primary key), the best sellers of the store's
    scopes (idem)."""
    history = (select(PurchaseLine.sku, func.max(Purchase.occurred_at).label("last"),
                      _source.name)
               .join(PurchaseLine, PurchaseLine.purchase_id == Purchase.id)
               .outerjoin(_source, _source.sku == PurchaseLine.sku)
               .where(Purchase.customer_id == bindparam("customer_id"),
                      Purchase.occurred_at >= bindparam("since"))
               .group_by(PurchaseLine.sku, _source.name).order_by(desc("last"))
               .limit(HISTORY_SKUS))
    return (history,
            _neighbours_of(RelatedProduct.sku.in_(bindparam("skus", expanding=True))),
            _popular_in(PopularProduct.scope.in_(bindparam("scopes", expanding=True)),
                        bindparam("depth")))


def for_customer(customer_id: int, limit: int, store: Any | None) -> list[dict[str, Any]]:
    """``limit`` active products for the person (a record merged into another: the
    survivor), in ``store``'s currency when one is given (a Store or the key's StoreRef)."""
    customer = db.session.get(Customer, customer_id)
    while customer is not None and customer.merged_into_id is not None:
        customer = db.session.get(Customer, customer.merged_into_id)
    if customer is None:
        raise NotFound(f"No customer has the id {customer_id}.")
    if customer.erased_at is not None:
        raise NotFound("This customer's data was erased.")
    since, recent = _times()
    history_stmt, neighbours_stmt, popular_stmt = _one_person()
    history, names = {}, {}
    for sku, last, name in db.session.execute(
            history_stmt, {"customer_id": customer.id, "since": since}):
        history[sku], names[sku] = last, name or sku
    neighbours = db.session.execute(neighbours_stmt, {"skus": sorted(history)}).all() \
        if history else []
    chain = _scopes(store)
    popular = db.session.execute(popular_stmt, {"scopes": list(chain),
                                                "depth": 2 * limit + len(history)}).all()
    return _answers({customer.id: history}, names, neighbours, popular,
                    {customer.id: chain}, limit, recent,
                    {customer.id: getattr(store, "currency", None)})[customer.id]


def for_customers(ids: list[int], limit: int, stores: dict[int, Any | None]
                  ) -> dict[int, list[dict[str, Any]]]:
    """The same for many people at once (campaigns), in three queries. ``stores`` gives
    each person's store (None: any currency, the overall best sellers)."""
    since, recent = _times()
    histories = _histories(ids, since)
    sources = sorted({sku for h in histories.values() for sku in h})
    names = dict(db.session.execute(select(Product.sku, Product.name)
                                    .where(any_of(Product.sku, sources))).all()) \
        if sources else {}
    neighbours = db.session.execute(_neighbours_of(any_of(RelatedProduct.sku, sources))
                                    ).all() if sources else []
    chains = {customer_id: _scopes(stores.get(customer_id)) for customer_id in ids}
    scopes = sorted({scope for chain in chains.values() for scope in chain})
    popular = db.session.execute(_popular_in(PopularProduct.scope.in_(scopes),
                                             limit + HISTORY_SKUS + 10)).all()
    return _answers(histories, names, neighbours, popular, chains, limit, recent,
                    {i: getattr(stores.get(i), "currency", None) for i in ids})


def _times() -> tuple[datetime, datetime]:
    now, config = utcnow(), current_app.config
    return (now - timedelta(days=config["RECOMMEND_WINDOW_DAYS"]),
            now - timedelta(days=config["RECOMMEND_RECENT_DAYS"]))


def _answers(histories: dict[int, dict[str, datetime]], names: dict[str, str],
             neighbour_rows: list[Any],
             popular_rows: list[Any], chains: dict[int, tuple[str, ...]], limit: int,
             recent: datetime, currencies: dict[int, str | None]
             ) -> dict[int, list[dict[str, Any]]]:
    catalogue: dict[str, Item] = {}
    neighbours: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for source, score, *product in neighbour_rows:  # tuples: fast
        neighbours[source].append((product[0], score))
        if product[0] not in catalogue:
            catalogue[product[0]] = Item(*product)
    popular: dict[str, list[str]] = defaultdict(list)
    for scope, *product in popular_rows:
        popular[scope].append(product[0])
        if product[0] not in catalogue:
            catalogue[product[0]] = Item(*product)
    return {customer_id: rank(
        histories.get(customer_id, {}), _scored(histories.get(customer_id, {}), neighbours),
        [sku for scope in chain for sku in popular[scope]], catalogue, names, limit, recent,
        currencies.get(customer_id)) for customer_id, chain in chains.items()}


def _histories(ids: list[int], since: datetime) -> dict[int, dict[str, datetime]]:
    """Per person, their skus of the window and when each was last bought (the most
    recent ``HISTORY_SKUS``)."""
    found: dict[int, list[tuple[datetime, str]]] = defaultdict(list)
    for customer_id, sku, last in db.session.execute(
            select(Purchase.customer_id, PurchaseLine.sku, func.max(Purchase.occurred_at))
            .join(PurchaseLine, PurchaseLine.purchase_id == Purchase.id)
            .where(Purchase.occurred_at >= since, any_of(Purchase.customer_id, ids))
            .group_by(Purchase.customer_id, PurchaseLine.sku)):
        found[customer_id].append((last, sku))
    return {customer_id: {sku: last for last, sku in sorted(rows, reverse=True)[:HISTORY_SKUS]}
            for customer_id, rows in found.items()}


def _scopes(store: Any | None) -> tuple[str, ...]:
    """Best sellers to fall back on, nearest first: the store's, its channel's, all."""
    if store is None:
        return ("all",)
    return (f"store:{store.id}", f"channel:{getattr(store, 'channel', None) or 'store'}",
            "all")


def _scored(history: dict[str, datetime], neighbours: dict[str, list[tuple[str, float]]]
            ) -> list[tuple[str, float, str]]:
    """(sku, score, the history's sku that gave it most) for skus not in the history,
    best first: the sum of the associations of what the person bought."""
    scores: dict[str, float] = defaultdict(float)
    best: dict[str, tuple[float, str]] = {}
    for sku in history:
        for other, score in neighbours.get(sku, ()):
            if other in history:
                continue
            scores[other] += score
            if score > best.get(other, (0.0, ""))[0]:
                best[other] = (score, sku)
    return [(sku, score, best[sku][1])
            for sku, score in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))]


def rank(history: dict[str, datetime], scored: list[tuple[str, float, str]],
         popular: list[str], catalogue: dict[str, Any], names: dict[str, str], limit: int,
         recent: datetime, currency: str | None) -> list[dict[str, Any]]:
    """The list for one person: active products they have not bought recently, by
    score, then the best sellers; at most a third of the list (at least one) from one
    category while others are available."""
    bought_recently = {sku for sku, last in history.items() if last >= recent}

    def usable(sku: str) -> bool:
        product = catalogue.get(sku)
        return (product is not None and sku not in bought_recently
                and (currency is None or product.currency == currency))

    candidates = [(sku, score, f"Often bought with {names.get(source, source)}")
                  for sku, score, source in scored if usable(sku)]
    seen = {sku for sku, _, _ in candidates}
    candidates += [(sku, 0.0, "A best seller here") for sku in dict.fromkeys(popular)
                   if sku not in seen and sku not in history and usable(sku)]
    cap = max(1, math.ceil(limit / 3))
    chosen, spare, per_category = [], [], defaultdict(int)
    for candidate in candidates:
        category = catalogue[candidate[0]].category
        if per_category[category] < cap:
            per_category[category] += 1
            chosen.append(candidate)
        else:
            spare.append(candidate)
        if len(chosen) == limit:
            break
    chosen += spare[:limit - len(chosen)]
    return [_item(catalogue[sku], score, reason) for sku, score, reason in chosen]


def _item(product: Any, score: float, reason: str) -> dict[str, Any]:
    return {"sku": product.sku, "name": product.name, "category": product.category,
            "price": to_amount(product.price, product.currency),
            "currency": product.currency, "image_url": product.image_url,
            "score": round(score, 6), "reason": reason}


def related(sku: str, limit: int = 10) -> list[dict[str, Any]]:
    """Products bought in the same baskets as ``sku`` (then by association)."""
    if db.session.get(Product, sku) is None and db.session.scalar(
            select(func.count()).select_from(RelatedProduct)
            .where(RelatedProduct.sku == sku)) == 0:
        raise NotFound(f"No product has the sku {sku!r}.")
    rows = db.session.execute(
        select(Product, RelatedProduct.baskets, RelatedProduct.score)
        .join(RelatedProduct, RelatedProduct.other_sku == Product.sku)
        .where(RelatedProduct.sku == sku, Product.active.is_(True))
        .order_by(RelatedProduct.baskets.desc(), RelatedProduct.score.desc(), Product.sku)
        .limit(limit)).all()
    return [_item(product, score, f"Bought together in {baskets} baskets" if baskets
                  else "Often bought by the same customers")
            for product, baskets, score in rows]

