"""Recommendation quality, measured: each customer's last basket is hidden, the model is
refreshed from the rest (the real refresh, on a real database), and the real ranker
(``loyalty.recommendations.for_customers``, what the till and campaigns call) recommends
10 products. Against, in the same run and on the same people: popularity (the overall
best sellers the person has not bought) and random products (idem).

hit rate@10: the share of people whose top 10 holds at least one product of their hidden
basket; recall@10: the share of a hidden basket's products found, averaged over people.
Only products the person had not bought before count as targets (nothing already bought
is ever recommended), and people whose hidden basket holds none are left out.

Two data sets of the same shape: ``structured`` (each customer has a taste, a group of
20 products across categories; 70% of their picks come from it, the rest by overall
popularity) and ``none`` (every pick by overall popularity alone). Targets: at least 2x
popularity's hit rate on ``structured``; on ``none`` no better than popularity (the
difference and its 95% interval, paired by person, are printed).

    .venv/bin/python -m bench.recommend [--customers 5000] [--db sqlite|postgres]
        [--damping 0.5 ...]
"""

from __future__ import annotations

import argparse
import math
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert, select, text

from bench.sync import _app, _fresh
from crm.db import db
from crm.models import Customer
from crm.sql import bulk_insert
from loyalty import products, recommendation_model, recommendations, settings
from loyalty.models import PopularProduct, Purchase, PurchaseLine

NOW = datetime.now(UTC)
SKUS = 500  # --skus
CATEGORIES = 20
GROUP_SIZE = 20  # products in a taste (--taste-size); tastes = SKUS // GROUP_SIZE
IN_TASTE = 0.7  # share of a structured customer's picks from their taste (--in-taste)
K = 10


def _popularity_weights() -> list[float]:
    return [1 / (n + 1) ** 0.8 for n in range(SKUS)]  # Zipf-like


def baskets(customers: int, structured: bool, seed: int
            ) -> tuple[dict[int, list[list[str]]], dict[int, list[str]]]:
    """Per customer, their baskets in time order (skus), and their taste (the group
    of products their in-taste picks come from; none when there is no structure)."""
    rng = random.Random(seed)
    order = list(range(SKUS))
    rng.shuffle(order)  # the groups cut across popularity and categories
    groups = [order[g * GROUP_SIZE:(g + 1) * GROUP_SIZE] for g in range(SKUS // GROUP_SIZE)]
    weights = _popularity_weights()
    out, tastes = {}, {}
    for c in range(1, customers + 1):
        taste = groups[rng.randrange(len(groups))]
        tastes[c] = [f"P{n:03d}" for n in sorted(taste)] if structured else []
        history = []
        for _ in range(rng.randint(3, 8)):
            size = rng.randint(2, 5)
            basket = set()
            while len(basket) < size:
                if structured and rng.random() < IN_TASTE:
                    basket.add(rng.choice(taste))
                else:
                    basket.add(rng.choices(range(SKUS), weights)[0])
            history.append([f"P{n:03d}" for n in sorted(basket)])
        out[c] = history
    return out, tastes


def load(data: dict[int, list[list[str]]]) -> dict[int, set[str]]:
    """Everything but each customer's last basket into the database; answer the hidden
    baskets."""
    sqlite = db.engine.dialect.name == "sqlite"
    db.session.execute(text("DELETE FROM recommendation_related"))
    for table in ("purchase_lines", "purchases", "customers"):
        db.session.execute(text(f"DELETE FROM {table}"))
    db.session.execute(insert(Customer), [
        {"id": c, "first_name": "B", "consent_sms": False, "consent_email": False,
         "created_at": NOW, "updated_at": NOW} for c in data])
    store_id = db.session.scalar(text("SELECT id FROM stores WHERE code = 'B1'"))
    sales, lines, hidden = [], [], {}
    for c, history in data.items():
        hidden[c] = set(history[-1])
        for n, basket in enumerate(history[:-1]):
            pid = len(sales) + 1
            when = NOW - timedelta(days=300 - n * 30, seconds=c)
            sales.append({"id": pid, "store_id": store_id, "receipt_id": f"R{pid}",
                          "request_hash": "", "customer_id": c, "occurred_at": when,
                          "currency": "EUR", "total": 100 * len(basket), "discount": 0,
                          "paid": 100 * len(basket), "points_earned": 0, "points_pending": 0,
                          "points_redeemed": 0, "coupons_applied": [], "returned_paid": 0,
                          "points_reversed": 0, "points_restored": 0, "created_at": when})
            first = len(lines) + 1
            lines.extend({"id": first + i, "purchase_id": pid, "sku": sku,
                          "category": None, "quantity": 1, "unit_price": 100, "amount": 100,
                          "earns": True, "returned_quantity": 0}
                         for i, sku in enumerate(basket))
    bulk_insert(Purchase.__table__, sales)
    bulk_insert(PurchaseLine.__table__, lines)
    db.session.commit()
    if not sqlite:
        db.session.execute(text("ANALYZE"))
    return hidden


def evaluate(data: dict[int, list[list[str]]], hidden: dict[int, set[str]],
             tastes: dict[int, list[str]], seed: int) -> dict[str, list[tuple[int, float]]]:
    """Per method, per person: (hit, recall)."""
    rng = random.Random(seed)
    seen = {c: {s for b in h[:-1] for s in b} for c, h in data.items()}
    people = [c for c in data if hidden[c] - seen[c]]
    popular = list(db.session.scalars(select(PopularProduct.sku)
                                      .where(PopularProduct.scope == "all")
                                      .order_by(PopularProduct.rank)))
    everything = [f"P{n:03d}" for n in range(SKUS)]
    ours: dict[int, list[str]] = {}
    for start in range(0, len(people), 1000):
        chunk = people[start:start + 1000]
        answers = recommendations.for_customers(chunk, K, dict.fromkeys(chunk))
        ours.update({c: [i["sku"] for i in items] for c, items in answers.items()})
        db.session.rollback()
    results: dict[str, list[tuple[int, float]]] = {
        "model": [], "popularity": [], "random": [], "oracle": []}
    rank_of = {sku: n for n, sku in enumerate(popular)}
    for c in people:
        targets = hidden[c] - seen[c]
        picks = {
            "model": ours[c],
            "popularity": [s for s in popular if s not in seen[c]][:K],
            "random": rng.sample([s for s in everything if s not in seen[c]], K),
            # knows the taste: its unbought products first (most popular first)
            "oracle": sorted((s for s in everything if s not in seen[c]),
                             key=lambda s: (s not in tastes[c], rank_of.get(s, SKUS)))[:K],
        }
        for method, chosen in picks.items():
            found = len(targets & set(chosen[:K]))
            results[method].append((int(found > 0), found / len(targets)))
    return results


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def paired_difference(a: list[int], b: list[int]) -> tuple[float, float, float]:
    """Mean of a - b with a 95% interval (normal approximation, paired by person)."""
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    mean = _mean(diffs)
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / max(1, len(diffs) - 1))
    half = 1.959964 * sd / math.sqrt(max(1, len(diffs)))
    return mean, mean - half, mean + half


def main() -> None:
    global SKUS, GROUP_SIZE, IN_TASTE
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--skus", type=int, default=SKUS)
    parser.add_argument("--taste-size", type=int, default=GROUP_SIZE)
    parser.add_argument("--in-taste", type=float, default=IN_TASTE)
    parser.add_argument("--variant", nargs="+", metavar="DAMPING:SOURCE_WEIGHT",
                        default=[f"{recommendation_model.POPULARITY_DAMPING}:"
                                 f"{recommendation_model.SOURCE_WEIGHT}"],
                        help="the model's POPULARITY_DAMPING and SOURCE_WEIGHT to try")
    args = parser.parse_args()
    SKUS, GROUP_SIZE, IN_TASTE = args.skus, args.taste_size, args.in_taste
    rows, verdicts = [], []
    with tempfile.TemporaryDirectory() as tmp_name:
        app = _app(_fresh(args.db, Path(tmp_name), "bench_recommend_quality"), Path(tmp_name))
        with app.app_context():
            settings.update_program({"currency": "EUR"})
            db.session.execute(text(
                "INSERT INTO stores (code, name, timezone, channel, currency, created_at) "
                "VALUES ('B1', 'Bench', 'Europe/Paris', 'store', 'EUR', :t)"), {"t": NOW})
            products.sync_products([
                {"sku": f"P{n:03d}", "name": f"Product {n}", "category": f"c{n % CATEGORIES}",
                 "price": "1.00", "currency": "EUR"} for n in range(SKUS)])
            db.session.commit()
            model = recommendation_model
            default = model.POPULARITY_DAMPING, model.SOURCE_WEIGHT
            variants = [tuple(float(x) for x in v.split(":")) for v in args.variant]
            for name, structured in (("structured", True), ("none", False)):
                data, tastes = baskets(args.customers, structured, seed=7 if structured else 8)
                hidden = load(data)
                for damping, weight in variants:
                    recommendation_model.POPULARITY_DAMPING = damping
                    recommendation_model.SOURCE_WEIGHT = weight
                    started = time.perf_counter()
                    recommendation_model.refresh()
                    db.session.commit()
                    refreshed = time.perf_counter() - started
                    results = evaluate(data, hidden, tastes, seed=9)
                    pop_hit = _mean([h for h, _ in results["popularity"]])
                    for method, values in results.items():
                        if method != "model" and (damping, weight) != variants[0]:
                            continue
                        hit, recall = _mean([h for h, _ in values]), _mean([r for _, r in values])
                        label = f"model {damping:g}:{weight:g}" if method == "model" else method
                        rows.append((name, label, len(values), hit, recall,
                                     hit / pop_hit if pop_hit else float("nan")))
                    diff = paired_difference([h for h, _ in results["model"]],
                                             [h for h, _ in results["popularity"]])
                    verdicts.append((name, f"{damping:g}:{weight:g}", diff, refreshed))
                model.POPULARITY_DAMPING, model.SOURCE_WEIGHT = default
            db.engine.dispose()
    print(f"\n{args.customers} customers, {SKUS} products, {args.db}; tastes of "
          f"{GROUP_SIZE} products, {IN_TASTE:.0%} of structured picks in taste; "
          "hidden: each last basket")
    print(f"{'data':<11} {'method':<22} {'people':>6} {'hit@10':>7} {'recall@10':>9} "
          f"{'hit vs pop':>10}")
    for name, label, people, hit, recall, ratio in rows:
        print(f"{name:<11} {label:<22} {people:>6} {hit:>7.3f} {recall:>9.3f} {ratio:>9.2f}x")
    print("(model D:S = POPULARITY_DAMPING:SOURCE_WEIGHT; oracle knows each taste)")
    for name, variant, (mean, low, high), refreshed in verdicts:
        if name == "structured":
            ratio = next(r for n, lab, *_, r in rows
                         if n == name and lab == f"model {variant}")
            verdict = "target met" if ratio >= 2 else "TARGET MISSED"
            print(f"structured, model {variant}: model/popularity hit rate {ratio:.2f}x "
                  f"(target >= 2x): {verdict}; refresh {refreshed:.2f} s")
        else:
            beats = low > 0
            print(f"none, model {variant}: model - popularity hit rate {mean:+.3f} "
                  f"[{low:+.3f}, {high:+.3f}] 95%: "
                  f"{'BEATS POPULARITY (look for a leak)' if beats else 'no better: as expected'}")


if __name__ == "__main__":
    main()
