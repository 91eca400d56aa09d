"""Benchmark: a reviewer's next item (ReviewService.next_item) with 100,000 items queued and 50 reviewers at once.

For each database (PostgreSQL, then SQLite for comparison) it makes a fresh database, queues --items review items
across five queues (three open to everyone, ``escalation`` and ``leads`` for leads only) with spread priorities and
ages, then --reviewers threads (one in ten a lead) each take their next item and decide it, --calls times, so the
queue drains as it would in real use. Each reviewer has its own PostgreSQL connection (--connections N shares N
instead; waiting for one then counts in the time). It times each call inside the process (the
server-side time the console's request spends in the service), and prints p50/p95/p99 per operation with ratios to
a baseline from the same run: a primary-key SELECT of one review item under the same concurrency. A
single-reviewer run shows the cost without contention. On PostgreSQL it prints ``EXPLAIN (ANALYZE, BUFFERS)`` of
the next-item statement exactly as the service sends it (captured from the driver, run in a rolled-back
transaction). Databases it creates are dropped at the end.

    .venv/bin/python bench/bench_review_next.py [--items 100000] [--reviewers 50] [--calls 20] [--connections N]
        [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres] [--skip-sqlite] [--quick]
        [--index 0007]  (0007's indexes instead of 0008's, for comparison)
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import create_engine, event, insert, select, text
from sqlalchemy.engine import make_url

from bastion.accounts.service import AccountService
from bastion.review import Reviewer, ReviewService
from bastion.settings import Settings
from bastion.storage.db import Database, make_engine, migrate
from bastion.storage.models import ContentItem, ReviewItem, utcnow

QUEUES = [("review", 0.4), ("fr", 0.2), ("de", 0.2), ("escalation", 0.1), ("leads", 0.1)]
CATEGORIES = ["propaganda", "glorification", "recruitment", "symbols_insignia"]


def seed(db: Database, n_items: int, n_reviewers: int) -> tuple[list[Reviewer], int]:
    """One organisation, its queues and people, ``n_items`` open review items (and their content rows)."""
    accounts = AccountService(db)
    org = accounts.create_organisation("bench").id
    review = ReviewService(db, Settings())
    review.create_queue("bench", org, "fr", criteria={"languages": ["fr"]})
    review.create_queue("bench", org, "de", criteria={"languages": ["de"]})
    review.create_queue("bench", org, "leads", criteria={"categories": ["recruitment"]}, roles=["lead", "admin"])
    people = []
    for i in range(n_reviewers):
        role = "lead" if i % 10 == 0 else "reviewer"
        u = accounts.create_user("bench", f"reviewer{i}@bench.example", role)
        people.append(Reviewer(u.id, org, role, u.email))
    rng = random.Random(7)
    now = utcnow()
    names, weights = zip(*QUEUES, strict=True)
    chunk = 10_000
    for start in range(0, n_items, chunk):
        count = min(chunk, n_items - start)
        with db.session() as s:
            ids = s.scalars(
                insert(ContentItem).returning(ContentItem.id),
                [
                    {
                        "organisation_id": org,
                        "external_id": f"post-{start + i}",
                        "source": "text",
                        "signals": [],
                        "status": "decided",
                        "jurisdictions": [],
                        "request_fingerprint": "",
                    }
                    for i in range(count)
                ],
            ).all()
            rows = []
            for cid in ids:
                queue = rng.choices(names, weights)[0]
                severity = rng.choice(["high", "normal", "normal", "low"])
                rows.append(
                    {
                        "organisation_id": org,
                        "content_id": cid,
                        "kind": "escalation" if queue == "escalation" else "review",
                        "queue": queue,
                        "severity": severity,
                        "status": "open",
                        "jurisdictions": [],
                        "priority": {"high": 3000, "normal": 1500, "low": 500}[severity] + 500 + rng.randrange(0, 1500),
                        "category": rng.choice(CATEGORIES),
                        "created_at": now - timedelta(seconds=rng.randrange(172_800)),
                    }
                )
            s.execute(insert(ReviewItem), rows)
    return people, org


class Timings:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.data: dict[str, list[float]] = {}

    def add(self, name: str, seconds: float) -> None:
        with self.lock:
            self.data.setdefault(name, []).append(seconds)


def work(review: ReviewService, who: Reviewer, calls: int, timings: Timings, label: str, rng: random.Random) -> None:
    for _ in range(calls):
        t0 = time.perf_counter()
        item = review.next_item(who)
        t1 = time.perf_counter()
        timings.add(f"next_item {label}", t1 - t0)
        if item is None:
            return
        if item.kind == "escalation" or rng.random() < 0.8:
            review.decide(who, item.id, "not_violating")
        else:
            review.decide(who, item.id, "violating", category=rng.choice(CATEGORIES), policy_reference="TOS 4.2")
        timings.add(f"decide {label}", time.perf_counter() - t1)


def pk_select(db: Database, ids: list[int], calls: int, timings: Timings, rng: random.Random) -> None:
    for _ in range(calls):
        t0 = time.perf_counter()
        with db.session() as s:
            s.get(ReviewItem, rng.choice(ids))
        timings.add("baseline: PK select", time.perf_counter() - t0)


def run_threads(targets: list) -> float:  # type: ignore[type-arg]
    threads = [threading.Thread(target=t) for t in targets]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def explain_next_item(db: Database, review: ReviewService, who: Reviewer) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of the statement next_item sends to take a new item (rolled back)."""
    captured: list[tuple[str, object]] = []

    def grab(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if "SKIP LOCKED" in statement:
            captured.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", grab)
    try:
        got = review.next_item(who)
    finally:
        event.remove(db.engine, "before_cursor_execute", grab)
    if got is not None:
        review.release(who, got.id)
    if not captured:
        return "(no next-item statement captured)"
    statement, params = captured[0]
    with db.engine.connect() as conn:
        tx = conn.begin()
        try:
            plan = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, params).scalars().all()
        finally:
            tx.rollback()
    return "\n".join(plan)


def bench(url: str, label: str, args: argparse.Namespace) -> tuple[list[tuple], str | None]:
    engine = make_engine(url)
    if engine.dialect.name == "postgresql":
        engine.dispose()
        pool = args.connections or args.reviewers
        engine = create_engine(url, pool_size=pool, max_overflow=0, pool_timeout=300, pool_pre_ping=True)
    migrate(engine)
    if args.index == "0007":  # the indexes before migration 0008, to compare plans
        with engine.begin() as c:
            c.execute(text("DROP INDEX ix_review_items_queue_next"))
            c.execute(text("DROP INDEX ix_review_items_org_next"))
            c.execute(
                text(
                    "CREATE INDEX ix_review_items_next ON review_items "
                    "(organisation_id, status, queue, priority, created_at)"
                )
            )
    db = Database(engine)
    t0 = time.perf_counter()
    people, _org = seed(db, args.items, args.reviewers)
    with db.session() as s:
        ids = list(s.scalars(select(ReviewItem.id)))
    if engine.dialect.name == "postgresql":
        with engine.connect() as c:
            c.execute(text("ANALYZE"))
            c.commit()
    print(f"[{label}] seeded {len(ids):,} items in {time.perf_counter() - t0:.1f} s", flush=True)
    review = ReviewService(db, Settings())
    timings = Timings()
    calls = args.calls if engine.dialect.name == "postgresql" else max(2, args.calls // 4)
    rngs = [random.Random(i) for i in range(args.reviewers)]
    run_threads([lambda r=r: pk_select(db, ids, calls, timings, r) for r in rngs])
    single = people[1]
    for _ in range(calls):
        work(review, single, 1, timings, "1 reviewer", rngs[0])
    wall = run_threads(
        [
            lambda p=p, r=r: work(review, p, calls, timings, f"{args.reviewers} reviewers", r)
            for p, r in zip(people, rngs, strict=True)
        ]
    )
    decided = len(timings.data.get(f"decide {args.reviewers} reviewers", []))
    print(
        f"[{label}] {args.reviewers} reviewers: {decided} items taken and decided in {wall:.1f} s "
        f"({decided / wall:.1f}/s)",
        flush=True,
    )
    plan = explain_next_item(db, review, people[2]) if engine.dialect.name == "postgresql" else None
    base = timings.data["baseline: PK select"]
    rows = []
    for name, values in timings.data.items():
        ms = np.array(values) * 1000
        p50, p95, p99 = (float(np.percentile(ms, p)) for p in (50, 95, 99))
        rows.append((label, name, len(values), p50, p95, p99, p95 / (float(np.percentile(base, 95)) * 1000)))
    engine.dispose()
    return rows, plan


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--reviewers", type=int, default=50)
    ap.add_argument("--calls", type=int, default=20, help="next items each reviewer takes and decides")
    ap.add_argument(
        "--postgres",
        default=os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"),
    )
    ap.add_argument("--connections", type=int, default=0, help="PostgreSQL connections (default: one per reviewer)")
    ap.add_argument("--skip-sqlite", action="store_true")
    ap.add_argument(
        "--index",
        choices=["0008", "0007"],
        default="0008",
        help="0007: replace migration 0008's next-item indexes by 0007's, to compare",
    )
    ap.add_argument("--quick", action="store_true", help="10,000 items, 10 reviewers, 5 calls each")
    args = ap.parse_args()
    if args.quick:
        args.items, args.reviewers, args.calls = 10_000, 10, 5
    rows: list[tuple] = []
    plan = None
    if args.postgres:
        name = f"bastion_bench_review_{os.getpid()}"
        admin = create_engine(make_url(args.postgres), isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            c.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            url = make_url(args.postgres).set(database=name).render_as_string(hide_password=False)
            got, plan = bench(url, "postgresql", args)
            rows += got
        finally:
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
    if not args.skip_sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            got, _ = bench(f"sqlite:///{Path(tmp) / 'bench.sqlite3'}", "sqlite", args)
            rows += got
    print(
        f"\n{'database':<11} {'operation':<26} {'calls':>6} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
        f"{'p95 / baseline p95':>19}"
    )
    for label, name, n, p50, p95, p99, ratio in rows:
        print(f"{label:<11} {name:<26} {n:6d} {p50:8.1f} {p95:8.1f} {p99:8.1f} {ratio:18.1f}x")
    print(
        f"\n({args.items:,} items queued; {args.reviewers} reviewer threads in one process, each taking and deciding "
        f"its next item; baseline: a primary-key SELECT of one review item under the same concurrency)"
    )
    if plan:
        print("\nPostgreSQL plan of the next-item statement:\n" + plan)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
