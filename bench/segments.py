"""Segments and campaign planning at scale: 1,000,000 customers, 3,000,000 purchases
and 10,000,000 purchase lines (generated here, over 400 days, in 3 stores and 30
categories).

1. A segment of 4 conditions, counted by the service (the rule compiled to SQL) and by
   a hand-written query of the same meaning in the same run (one pass over purchases
   for spend and recency, EXISTS for the category), each timed 3 times, alternating;
   the ratio of the medians (target: at most 1.2).
2. Planning and queueing a campaign to the ~100,000 members of a segment, with a
   personal coupon and personal fields each (target: under 10 s).

3. ``--console``: the console's live count (POST /console/segments/count, signed in as
   a marketer, through the app's own WSGI stack): the time to its first answer (the figure,
   or "counting..." after SEGMENT_COUNT_WAIT), and to the figure (polling as the page
   does), against the service's plain count of the same rule in the same run (the
   ratio). Measured for the demo's segments on the demo data (`flask demo`, 3,000
   customers) and for the API example, the 4-condition rule and a one-condition rule on
   the generated data.

    .venv/bin/python -m bench.segments [--db sqlite|postgres|both] [--customers 1000000]
    .venv/bin/python -m bench.segments --console [--db ...] [--customers 1000000]
"""

from __future__ import annotations

import argparse
import contextvars
import random
import re
import statistics
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import func, select, text
from werkzeug.datastructures import MultiDict

from bench.sync import _app, _fresh
from campaigns import campaign_settings, planner, segments
from campaigns.models import Campaign, CampaignRecipient, Message
from crm.db import db
from crm.models import birthday_columns, identifier_row
from loyalty import coupons, settings

NOW = datetime.now(UTC)
CITIES = [f"City{n}" for n in range(20)]
CATEGORIES = [f"cat-{n}" for n in range(30)]
RULE = {"all": [
    {"field": "spend", "op": "gte", "value": "200.00", "window_days": 90},
    {"field": "days_since_last_purchase", "op": "gte", "value": 14},
    {"field": "bought_category", "op": "eq", "value": "cat-3", "window_days": 180},
    {"field": "consent_sms", "op": "eq", "value": True}]}
HAND_WRITTEN = """
SELECT count(*) FROM customers c
JOIN (SELECT customer_id,
             sum(CASE WHEN occurred_at >= :since_90 THEN paid ELSE 0 END) AS spend_90,
             max(occurred_at) AS last_at
      FROM purchases WHERE customer_id IS NOT NULL GROUP BY customer_id) a
  ON a.customer_id = c.id
WHERE c.merged_into_id IS NULL AND c.erased_at IS NULL AND c.consent_sms = :yes
  AND a.spend_90 >= 20000 AND a.last_at <= :before_14
  AND EXISTS (SELECT 1 FROM purchases p JOIN purchase_lines l ON l.purchase_id = p.id
              WHERE p.customer_id = c.id AND p.occurred_at >= :since_180
                AND l.category = 'cat-3')
"""
CAMPAIGN_RULE = {"all": [{"field": "city", "op": "in", "value": CITIES[:3]},
                         {"field": "consent_sms", "op": "eq", "value": True}]}


def _stamp(moment: datetime, sqlite: bool) -> object:
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else moment


def generate(customers: int, lines: int) -> None:
    """Bulk rows through the driver (COPY on PostgreSQL)."""
    rng = random.Random(20261125)
    sqlite = db.engine.dialect.name == "sqlite"
    settings.update_program({"currency": "EUR"})
    db.session.execute(text(
        "INSERT INTO stores (id, code, name, timezone, channel, currency, created_at) VALUES "
        "(1, 'S1', 'Shop 1', 'Europe/Paris', 'store', 'EUR', :t), "
        "(2, 'S2', 'Shop 2', 'Europe/Paris', 'store', 'EUR', :t), "
        "(3, 'WEB', 'Web', 'Europe/Paris', 'online', 'EUR', :t)"), {"t": NOW})
    db.session.commit()
    purchases = lines * 3 // 10
    now = _stamp(NOW, sqlite)
    def person(n: int) -> tuple[object, ...]:
        birthday = birthday_columns(n, date(1950 + n % 50, 1 + n % 12, 1 + n % 28))
        return (n, "Member", f"P{n}", birthday["birthday_sealed"], birthday["birth_year"],
                birthday["birth_month"], birthday["birthday_index"],
                CITIES[rng.randrange(20)], rng.random() < 0.7, False, now, now)

    people = (person(n) for n in range(1, customers + 1))
    phones = ((row["id"], row["customer_id"], "phone", row["lookup"], row["sealed"],
               row["fragment"], now)
              for row in (identifier_row(n, n, "phone", f"+1415{n:07d}")
                          for n in range(1, customers + 1)))
    sales = []
    for n in range(1, purchases + 1):
        when = _stamp(NOW - timedelta(seconds=rng.randrange(400 * 86400)), sqlite)
        sales.append((n, 1 + n % 3, f"B{n}", "", rng.randrange(1, customers + 1), when, "EUR",
                      rng.randrange(500, 20000)))
    sale_rows = ((n, s, r, h, c, w, cur, paid, 0, paid, 0, 0, 0, "[]", 0, 0, 0, now)
                 for n, s, r, h, c, w, cur, paid in sales)
    line_rows = ((n, 1 + n % purchases, f"SKU{n % 500}", CATEGORIES[(n * 7) % 30 if n % 3
                                                                     else rng.randrange(30)],
                  1, 100, 100, True, 0) for n in range(1, lines + 1))
    tables = [
        ("customers", "id, first_name, last_name, birthday_sealed, birth_year, birth_month, "
                      "birthday_index, city, consent_sms, consent_email, created_at, "
                      "updated_at", people),
        ("customer_identifiers", "id, customer_id, kind, lookup, sealed, fragment, created_at",
         phones),
        ("purchases", "id, store_id, receipt_id, request_hash, customer_id, occurred_at, "
                      "currency, total, discount, paid, points_earned, points_pending, "
                      "points_redeemed, coupons_applied, returned_paid, points_reversed, "
                      "points_restored, created_at", sale_rows),
        ("purchase_lines", "id, purchase_id, sku, category, quantity, unit_price, amount, "
                           "earns, returned_quantity", line_rows),
    ]
    raw = db.engine.raw_connection()
    try:
        cursor = raw.cursor()
        for table, columns, rows in tables:
            started = time.perf_counter()
            if sqlite:
                marks = ", ".join("?" * len(columns.split(",")))
                cursor.execute("BEGIN")
                cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)
                cursor.execute("COMMIT")
            else:
                with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
                raw.commit()
            print(f"  {table}: {time.perf_counter() - started:.1f} s", flush=True)
        if not sqlite:
            for table in ("customers", "purchases", "purchase_lines"):
                cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                               f"(SELECT max(id) FROM {table}))")
        cursor.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()


def time_counts() -> tuple[float, float, int]:
    checked = segments.checked(RULE)
    params = {"since_90": NOW - timedelta(days=90), "before_14": NOW - timedelta(days=14),
              "since_180": NOW - timedelta(days=180), "yes": True}
    ours, theirs = [], []
    for _ in range(3):
        started = time.perf_counter()
        found = segments.count(checked, NOW)
        ours.append(time.perf_counter() - started)
        db.session.rollback()
        started = time.perf_counter()
        expected = db.session.scalar(text(HAND_WRITTEN).bindparams(**params)
                                     if db.engine.dialect.name == "postgresql"
                                     else _sqlite_params(params))
        theirs.append(time.perf_counter() - started)
        db.session.rollback()
        assert found == expected, (found, expected)
    return statistics.median(ours), statistics.median(theirs), found


def _sqlite_params(params: dict) -> object:
    values = {k: v.strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(v, datetime) else int(v)
              for k, v in params.items()}
    return text(HAND_WRITTEN).bindparams(**values)


def plan_campaign() -> tuple[float, dict[str, int]]:
    segment = segments.create_segment({"name": "Three cities", "rule": CAMPAIGN_RULE})
    offer = coupons.create_offer({"name": "10% off", "kind": "percent", "value": Decimal(10),
                                  "currency": "EUR"})
    campaign = campaign_settings.create_campaign({
        "name": "Winter", "segment_id": segment.id, "offer_id": offer.id,
        "template": "Hi {name}, {points} points wait for you. Code {coupon_code} (10% off)",
        "schedule": {"at": NOW.isoformat()}, "holdout_percent": 10})
    campaign_settings.activate(campaign.id)
    db.session.commit()
    started = time.perf_counter()
    counts = planner.run(db.session.get(Campaign, campaign.id), NOW + timedelta(seconds=1))
    db.session.commit()
    elapsed = time.perf_counter() - started
    queued = db.session.scalar(select(func.count()).select_from(Message)
                               .where(Message.campaign_id == campaign.id))
    recipients = db.session.scalar(select(func.count()).select_from(CampaignRecipient)
                                   .where(CampaignRecipient.campaign_id == campaign.id))
    assert queued == counts["queued"] and recipients == counts["audience"]
    return elapsed, counts


EXAMPLE = {"all": [{"field": "spend", "op": "gte", "value": "400.00", "window_days": 30},
                   {"field": "days_since_last_purchase", "op": "gte", "value": 14}]}
CONSOLE_RULES = {"API.md example": EXAMPLE, "4 conditions": RULE,
                 "SMS consent": {"field": "consent_sms", "op": "eq", "value": True}}
CONSOLE_PASSWORD = "bench console password"


class _OwnContextClient(FlaskClient):
    """Each request in its own app context (its own session and ``g``), as in production,
    while the benchmark holds one of its own."""

    def open(self, *args: Any, **kwargs: Any) -> Any:
        return contextvars.Context().run(super().open, *args, **kwargs)


def _console_client(app: Any, email: str) -> tuple[Any, str]:
    from console import users

    users.create_user(email, "marketer", CONSOLE_PASSWORD)
    db.session.commit()
    client = _OwnContextClient(app, app.response_class, use_cookies=True)
    client.environ_base.update({"wsgi.url_scheme": "https",  # the session cookie is Secure
                                "HTTP_REFERER": "https://localhost/console/"})  # CSRF

    def token(path: str) -> str:
        html = client.get(path).get_data(as_text=True)
        return re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)

    client.post("/console/login", data={"email": email,
                                        "password": CONSOLE_PASSWORD,
                                        "csrf_token": token("/console/login")})
    return client, token("/console/")


def console_counts(app: Any, rules: dict[str, Any],
                   email: str = "bench-marketer@example.com") -> list[tuple[str, int, float,
                                                                           float, float, bool]]:
    """Per rule: members, the plain count (s), the console's first answer (s), the
    console's figure (s), and whether the first answer was "counting..."."""
    from console import segment_counts
    from console import segment_form as sf

    client, token = _console_client(app, email)
    out = []
    for name, rule in rules.items():
        started = time.perf_counter()
        plain = segments.count(segments.checked(rule))
        baseline = time.perf_counter() - started
        db.session.rollback()
        segment_counts.forget()  # nothing reused from another run
        form = MultiDict([*sf.to_form(sf.from_rule(rule)), ("csrf_token", token)])
        started = time.perf_counter()
        first, polled = None, False
        while True:
            html = client.post("/console/segments/count", data=form,
                               headers={"HX-Request": "true"}).get_data(as_text=True)
            first = first if first is not None else time.perf_counter() - started
            found = re.search(r'id="member-count">([\d,]+)<', html)
            if found:
                break
            assert "Counting" in html, html[:500]
            polled = True
            time.sleep(0.5)  # the page's poll: load delay:500ms
        figure = time.perf_counter() - started
        shown = int(found.group(1).replace(",", ""))
        assert shown == plain, (name, shown, plain)
        out.append((name, plain, baseline, first, figure, polled))
    return out


def _print_console(kind: str, what: str, rows: list) -> None:
    for name, members, baseline, first, figure, polled in rows:
        print(f"{kind} {what}: {name!r} {members:,} members: plain count {baseline:.3f} s; "
              f"console first answer {first:.3f} s"
              f"{' (counting..., then polled)' if polled else ' (the figure)'}, figure "
              f"{figure:.3f} s, ratio {figure / baseline if baseline else 0:.2f}")


def console_main(args: argparse.Namespace, kinds: tuple[str, ...]) -> None:
    from campaigns.models import Segment
    from crm.demo import load_demo

    printed = []
    for kind in kinds:
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            app = _app(_fresh(kind, tmp, "bench_segments_demo"), tmp)
            with app.app_context():
                started = time.perf_counter()
                load_demo(args.demo_customers)
                db.session.commit()
                print(f"{kind}: demo data ({args.demo_customers} customers) in "
                      f"{time.perf_counter() - started:.0f} s", flush=True)
                demo_rules = {s.name: s.rule for s in db.session.scalars(select(Segment))}
                demo_rules["API.md example"] = EXAMPLE
                rows = console_counts(app, demo_rules)
                _print_console(kind, "demo, no statistics", rows)
                printed.append((kind, "demo, no statistics", rows))
                # The planner's statistics, as autovacuum (PostgreSQL) would gather soon
                # after a load: without them a fresh load is planned as if empty.
                db.session.execute(text("ANALYZE"))
                db.session.commit()
                rows = console_counts(app, demo_rules, "bench-marketer-2@example.com")
                _print_console(kind, "demo, after ANALYZE", rows)
                printed.append((kind, "demo, after ANALYZE", rows))
                db.engine.dispose()
            if args.demo_only:
                continue
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            app = _app(_fresh(kind, tmp, "bench_segments"), tmp)
            with app.app_context():
                print(f"{kind}: generating {args.customers} customers, {args.lines} lines",
                      flush=True)
                started = time.perf_counter()
                generate(args.customers, args.lines)
                print(f"  generated in {time.perf_counter() - started:.0f} s", flush=True)
                rows = console_counts(app, CONSOLE_RULES)
                _print_console(kind, f"{args.customers:,} customers", rows)
                printed.append((kind, f"{args.customers:,} customers", rows))
                db.engine.dispose()
    print("--")
    for kind, what, rows in printed:
        _print_console(kind, what, rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--lines", type=int, default=10_000_000)
    parser.add_argument("--console", action="store_true",
                        help="time the console's live count (see the module's doc)")
    parser.add_argument("--demo-customers", type=int, default=3000)
    parser.add_argument("--demo-only", action="store_true", help="--console on the demo only")
    args = parser.parse_args()
    kinds = ("sqlite", "postgres") if args.db == "both" else (args.db,)
    if args.console:
        console_main(args, kinds)
        return
    results = []
    for kind in kinds:
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            app = _app(_fresh(kind, tmp, "bench_segments"), tmp)
            with app.app_context():
                print(f"{kind}: generating {args.customers} customers, {args.lines} lines",
                      flush=True)
                started = time.perf_counter()
                generate(args.customers, args.lines)
                print(f"  generated in {time.perf_counter() - started:.0f} s", flush=True)
                ours, theirs, found = time_counts()
                elapsed, counts = plan_campaign()
                db.engine.dispose()
            results.append((kind, ours, theirs, found, elapsed, counts))
    for kind, ours, theirs, found, elapsed, counts in results:
        print(f"{kind}: segment of 4 conditions, {found} members: compiled {ours:.3f} s, "
              f"hand-written {theirs:.3f} s, ratio {ours / theirs:.2f} (target <= 1.2)")
        print(f"{kind}: campaign to {counts['audience']} ({counts.get('queued', 0)} queued "
              f"with coupons, {counts['holdout']} held out, "
              f"{counts.get('no_phone', 0)} without phone): "
              f"planned and queued in {elapsed:.1f} s (target < 10 s)")


if __name__ == "__main__":
    main()
