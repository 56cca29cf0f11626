"""A survey's results page at scale: 50,000 customers and 300,000 purchases over 400 days
in 3 stores (bench/segments.py's generator), every purchase invited to one NPS survey
and two in three answered (200,000 answers, one in four with a comment).

Times what the console's results page computes (``surveys.results``, ``surveys.trend``
by ISO week, the first page of ``surveys.comments``), all stores and one store, and the
whole page as a signed-in browser gets it, against a baseline in the same run: a bare
``SELECT count(*)`` of the survey's answers (one pass over its index). Each is timed 5
times, alternating; it prints the medians and their ratio to the baseline.

    .venv/bin/python -m bench.surveys [--db sqlite|postgres|both] [--customers 50000]
                                      [--purchases 300000]
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

from bench.segments import generate
from bench.sync import _app, _fresh
from campaigns import surveys
from console import users
from crm.db import db
from crm.pagination import paginate

INVITATIONS = """
INSERT INTO survey_invitations (id, survey_id, customer_id, purchase_id, store_id, status,
                                due_at, invited_at, expires_at, created_at)
SELECT id, :survey, customer_id, id, store_id, 'answered', occurred_at, occurred_at,
       occurred_at, occurred_at
FROM purchases
"""
RESPONSES = """
INSERT INTO survey_responses (invitation_id, survey_id, customer_id, store_id, score,
                              comment, channel, created_at)
SELECT id, :survey, customer_id, store_id, (id * 7) % 11,
       CASE WHEN id % 4 = 0 THEN 'A comment about the visit' END, 'sms', occurred_at
FROM purchases WHERE id % 3 <> 0
"""


def seed(customers: int, purchases: int) -> int:
    generate(customers, purchases * 10 // 3)
    survey = surveys.create_survey({"name": "Bench", "kind": "nps", "question": "Q?"})
    users.create_user("bench@example.com", "viewer", "bench password 123")
    db.session.commit()
    started = time.perf_counter()
    db.session.execute(text(INVITATIONS), {"survey": survey.id})
    db.session.execute(text(RESPONSES), {"survey": survey.id})
    db.session.commit()
    db.session.execute(text("ANALYZE"))
    db.session.commit()
    print(f"  invitations and answers: {time.perf_counter() - started:.1f} s", flush=True)
    return survey.id


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - started
    db.session.rollback()
    return elapsed


def _figures(survey_id: int, store: str | None) -> None:
    surveys.results(survey_id, store)
    surveys.trend(survey_id, store)
    paginate(surveys.comments(survey_id, store), 1, 20)


def measure(app, survey_id: int, rounds: int) -> dict[str, float]:
    client = app.test_client()
    html = client.get("/console/login").get_data(as_text=True)
    token = re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)
    client.post("/console/login", data={"email": "bench@example.com",
                                        "password": "bench password 123", "csrf_token": token})
    page = f"/console/surveys/{survey_id}/results"
    assert client.get(page).status_code == 200  # warm: caches, plans
    count = text("SELECT count(*) FROM survey_responses WHERE survey_id = :s")
    times: dict[str, list[float]] = {k: [] for k in ("baseline", "all", "store", "page")}
    for _ in range(rounds):
        times["baseline"].append(_timed(lambda: db.session.scalar(count, {"s": survey_id})))
        times["all"].append(_timed(lambda: _figures(survey_id, None)))
        times["store"].append(_timed(lambda: _figures(survey_id, "S2")))
        times["page"].append(_timed(lambda: client.get(page)))
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--purchases", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    kinds = ("sqlite", "postgres") if args.db == "both" else (args.db,)
    results = []
    for kind in kinds:
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            app = _app(_fresh(kind, tmp, "bench_surveys"), tmp)
            with app.app_context():
                print(f"{kind}: generating {args.customers} customers, {args.purchases} "
                      "purchases", flush=True)
                survey_id = seed(args.customers, args.purchases)
                r = surveys.results(survey_id)
                weeks = surveys.trend(survey_id)
                print(f"  {r['responses']} answers, NPS {r['nps']}, {len(weeks)} weeks",
                      flush=True)
                results.append((kind, measure(app, survey_id, args.rounds)))
                db.engine.dispose()
    for kind, t in results:
        print(f"{kind}: results + trend + comments {t['all']:.3f} s (one store "
              f"{t['store']:.3f} s), whole page {t['page']:.3f} s; baseline count(*) of the "
              f"answers {t['baseline']:.3f} s; ratio all/baseline "
              f"{t['all'] / t['baseline']:.1f}, page/baseline {t['page'] / t['baseline']:.1f}")


if __name__ == "__main__":
    main()
