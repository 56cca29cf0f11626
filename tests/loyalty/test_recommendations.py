"""The catalogue, the recommendation model's refresh, and its answers at the till and
in the shop, through the HTTP interface."""

from __future__ import annotations

from sqlalchemy import func, select

from campaigns import jobs as campaign_jobs
from crm.db import db
from loyalty import recommendation_model
from loyalty.models import PopularProduct, RelatedProduct
from tests.helpers import ago

CATALOGUE = [
    {"sku": "BEANS", "name": "Ethiopian beans", "category": "coffee", "price": "12.50",
     "currency": "EUR"},
    {"sku": "PAPERS", "name": "Filter papers", "category": "coffee-kit", "price": "3.20",
     "currency": "EUR"},
    {"sku": "MUG", "name": "Mug", "category": "kitchen", "price": "8.00", "currency": "EUR"},
    {"sku": "BREAD", "name": "Sourdough", "category": "bakery", "price": "4.00",
     "currency": "EUR"},
    {"sku": "CROISSANT", "name": "Croissant", "category": "bakery", "price": "1.40",
     "currency": "EUR"},
    {"sku": "BAGUETTE", "name": "Baguette", "category": "bakery", "price": "1.10",
     "currency": "EUR"},
    {"sku": "MILK", "name": "Milk", "category": "dairy", "price": "1.20", "currency": "EUR"},
    {"sku": "USD-TEA", "name": "Tea", "category": "tea", "price": "5.00", "currency": "USD"},
    {"sku": "OLD", "name": "Discontinued", "category": "coffee-kit", "price": "2.00",
     "currency": "EUR", "active": False},
]


def _line(sku: str) -> dict:
    return {"sku": sku, "category": "any", "quantity": 1, "unit_price": "1.00"}


def _sell(till, member, skus, **extra):
    return till.buy(member, f"{len(skus)}.00", lines=[_line(s) for s in skus], **extra)


def _sync(client, headers, products):
    r = client.post("/api/v1/products/sync", headers=headers, json={"products": products})
    assert r.status_code == 200, r.get_json()
    return [item["result"] for item in r.get_json()["results"]]


def _recommend(client, headers, customer_id, expect=200, **query):
    r = client.get(f"/api/v1/customers/{customer_id}/recommendations", headers=headers,
                   query_string=query)
    assert r.status_code == expect, r.get_json()
    return r.get_json().get("items")


def _refresh(runner):
    result = runner.invoke(args=["recommendations", "refresh"])
    assert result.exit_code == 0, result.output
    return result.output


def test_catalogue_sync_answers_each_item_and_lists(client, factory):
    shop = factory.headers("shop")
    assert _sync(client, shop, CATALOGUE) == ["created"] * len(CATALOGUE)
    changed = dict(CATALOGUE[0], price="13.00")
    assert _sync(client, shop, [changed, CATALOGUE[1], {"sku": "BAD", "name": "x"},
                                dict(CATALOGUE[2], price="1.234"), "nonsense"]) \
        == ["updated", "unchanged", "invalid", "invalid", "invalid"]
    one = client.get("/api/v1/products/BEANS", headers=shop).get_json()
    assert one["price"] == "13.00" and one["currency"] == "EUR" and one["active"] is True
    assert client.get("/api/v1/products/NOPE", headers=shop).status_code == 404
    pos = factory.headers("pos")
    bakery = client.get("/api/v1/products?category=bakery", headers=pos).get_json()["items"]
    assert [p["sku"] for p in bakery] == ["BAGUETTE", "BREAD", "CROISSANT"]
    found = client.get("/api/v1/products?q=ethiop", headers=pos).get_json()["items"]
    assert [p["sku"] for p in found] == ["BEANS"]
    assert client.get("/api/v1/products?q=%25", headers=pos).get_json()["items"] == []
    assert client.post("/api/v1/products/sync", headers=pos,
                       json={"products": CATALOGUE}).status_code == 403
    too_many = client.post("/api/v1/products/sync", headers=shop,
                           json={"products": [CATALOGUE[0]] * 1001})
    assert too_many.status_code == 422
    assert too_many.headers["Content-Type"] == "application/problem+json"


def _history(till, factory):
    """Coffee people buy beans with papers; everyone buys bread; a few buy milk."""
    coffee = [factory.customer() for _ in range(4)]
    for person in coffee:
        _sell(till, {"id": person.id}, ["BEANS", "PAPERS"], occurred_at=ago(days=60))
        _sell(till, {"id": person.id}, ["BREAD"], occurred_at=ago(days=50))
    for _ in range(5):
        person = factory.customer()
        _sell(till, {"id": person.id}, ["BREAD", "CROISSANT", "MILK"], occurred_at=ago(days=40))
    _sell(till, None, ["BEANS", "MUG"])  # anonymous baskets count for "bought together"
    _sell(till, None, ["BEANS", "MUG"])
    newcomer = factory.customer()
    _sell(till, {"id": newcomer.id}, ["BEANS", "NOT-IN-CATALOGUE"], occurred_at=ago(days=45))
    return coffee, newcomer


def test_recommendations_from_history_with_reasons(client, factory, till, runner):
    shop = factory.headers("shop")
    _sync(client, shop, CATALOGUE)
    _coffee, newcomer = _history(till, factory)
    assert '"related"' in _refresh(runner)
    items = _recommend(client, till.headers, newcomer.id, limit=3)
    assert items[0]["sku"] == "PAPERS" and items[0]["reason"] == "Often bought with Ethiopian beans"
    assert items[0]["price"] == "3.20" and items[0]["score"] > 0
    skus = [i["sku"] for i in items]
    assert "BEANS" not in skus and "OLD" not in skus and "USD-TEA" not in skus
    assert len({i["category"] for i in items}) == 3  # one per category at three
    assert _recommend(client, shop, newcomer.id, store_code=till.store, limit=3) == items
    nobody = factory.customer()  # no history: the store's best sellers
    fallback = _recommend(client, till.headers, nobody.id, limit=2)
    assert fallback[0]["sku"] == "BREAD" and fallback[0]["reason"] == "A best seller here"
    assert {i["category"] for i in fallback} == {"bakery", "coffee"}  # BREAD, then BEANS
    related = client.get("/api/v1/products/BEANS/related", headers=shop).get_json()["items"]
    assert related[0]["sku"] == "PAPERS" and related[0]["reason"] == \
        "Bought together in 4 baskets"
    assert client.get("/api/v1/products/NOPE/related", headers=shop).status_code == 404


def test_recently_bought_is_not_recommended(client, factory, till, runner):
    _sync(client, factory.headers("shop"), CATALOGUE)
    _coffee, newcomer = _history(till, factory)
    _sell(till, {"id": newcomer.id}, ["PAPERS"])  # today
    _refresh(runner)
    skus = [i["sku"] for i in _recommend(client, till.headers, newcomer.id)]
    assert "PAPERS" not in skus and "BEANS" not in skus and "BREAD" in skus


def test_who_may_ask(client, factory, till, runner):
    _sync(client, factory.headers("shop"), CATALOGUE)
    person = factory.customer()
    other_till = factory.headers("pos")
    assert _recommend(client, other_till, person.id) == []  # no model yet, no sales
    _recommend(client, till.headers, person.id, 403, store_code="ELSEWHERE")
    _recommend(client, factory.headers("marketing"), person.id, 403)
    _recommend(client, till.headers, 999999, 404)
    _recommend(client, till.headers, person.id, 422, limit=0)
    _recommend(client, factory.headers("shop"), person.id, 404, store_code="NOPE")
    assert client.get("/api/v1/products/BEANS/related",
                      headers=factory.headers("marketing")).status_code == 403


def test_erased_history_leaves_the_model_at_the_next_refresh(client, factory, till, runner):
    _sync(client, factory.headers("shop"), CATALOGUE)
    coffee, newcomer = _history(till, factory)
    _refresh(runner)
    pair = select(RelatedProduct.customers).where(RelatedProduct.sku == "BEANS",
                                                  RelatedProduct.other_sku == "PAPERS")
    assert db.session.scalar(pair) == 4
    admin = factory.headers("admin")
    for person in coffee[:2]:
        assert client.delete(f"/api/v1/customers/{person.id}", headers=admin).status_code \
            in (200, 204)
    _recommend(client, till.headers, coffee[0].id, 404)
    assert db.session.scalar(pair) == 4  # until the next refresh
    _refresh(runner)
    db.session.rollback()
    assert db.session.scalar(pair) is None  # two buyers left: under MIN_CUSTOMERS
    skus = [i["sku"] for i in _recommend(client, till.headers, newcomer.id)]
    assert skus[0] != "PAPERS"


def test_a_merged_record_answers_for_its_survivor(client, factory, till, runner):
    _sync(client, factory.headers("shop"), CATALOGUE)
    _coffee, newcomer = _history(till, factory)
    _refresh(runner)
    survivor = factory.customer()
    r = client.post(f"/api/v1/customers/{survivor.id}/merge", headers=factory.headers("admin"),
                    json={"source_customer_id": newcomer.id})
    assert r.status_code == 200, r.get_json()
    assert _recommend(client, till.headers, newcomer.id, limit=3) \
        == _recommend(client, till.headers, survivor.id, limit=3)
    assert _recommend(client, till.headers, survivor.id, limit=1)[0]["sku"] == "PAPERS"


def test_refresh_is_a_scheduled_job_and_replaces_the_model(client, factory, till, app):
    _sync(client, factory.headers("shop"), CATALOGUE)
    _history(till, factory)
    assert "refresh-recommendations" in campaign_jobs.schedule(app.config)
    first = campaign_jobs.run_here("refresh-recommendations")
    rows = db.session.scalar(select(func.count()).select_from(RelatedProduct))
    again = campaign_jobs.run_here("refresh-recommendations")
    assert rows and first["related"] == again["related"] == rows
    assert db.session.scalar(select(func.count()).select_from(RelatedProduct)) == rows
    scopes = set(db.session.scalars(select(PopularProduct.scope).distinct()))
    assert {"all", "channel:store"} <= scopes and any(s.startswith("store:") for s in scopes)
    # Outside the window nothing is learnt.
    later = recommendation_model.refresh(now=ago(days=-400))
    assert later["lines"] == 0 and later["related"] == 0



def test_the_paths_of_api_md_are_served(client):
    paths = client.get("/api/openapi.json").get_json()["paths"]
    for path in ("/api/v1/products/sync", "/api/v1/products", "/api/v1/products/{sku}",
                 "/api/v1/products/{sku}/related",
                 "/api/v1/customers/{customer_id}/recommendations"):
        assert path in paths, path


def test_refresh_of_an_empty_database(factory):
    counts = recommendation_model.refresh()
    assert (counts["lines"], counts["related"], counts["popular"]) == (0, 0, 0)
