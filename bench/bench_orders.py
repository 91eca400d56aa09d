"""Benchmark: 1,000 binding removal orders, from receipt to action and to confirmation (target: median < 1 s).

For each database (PostgreSQL, then SQLite) it makes a fresh database with one platform (orders executed
automatically), one competent authority that the platform accepts (with a webhook registered, so every confirmation
is also written to its outbox), and --orders + --baseline submissions carrying generated hashes (benign: random
digests, no content). Then, one order after another, it calls ``OrderService.receive`` as ``POST /v1/orders`` does
(validate, store, execute: a new ``remove`` decision + audit + ``decision.changed``; bank the hashes; confirm:
confirmation + audit + ``order.confirmed``). From the order's own timestamps it takes receipt -> action
(``executed_at - received_at``) and receipt -> confirmation (``confirmed_at - received_at``), and the whole call's
wall time. The baseline, measured in the same run on the same database, is the plain cost of recording one
removal decision the usual way (decision + audit record + ``decision.changed`` event, one transaction), per
submission. Databases it creates are dropped at the end.

    .venv/bin/python bench/bench_orders.py [--orders 1000] [--baseline 1000]
        [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres] [--skip-postgres] [--skip-sqlite]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import make_url

from bastion import audit
from bastion.accounts.service import AccountService
from bastion.compliance.authorities import AuthorityService
from bastion.compliance.orders import OrderService
from bastion.settings import Settings
from bastion.storage.db import Database, make_engine, migrate
from bastion.storage.models import ContentItem, Decision, Webhook, as_utc, utcnow
from bastion.webhooks import emit


def seed(db: Database, n: int) -> tuple[int, int]:
    accounts = AccountService(db)
    platform = accounts.create_organisation("platform").id
    authority = AuthorityService(db).create("authority", "competent_authority", "DE")
    AuthorityService(db).accept("authority", "platform")
    now = utcnow()
    rows = []
    for i in range(n):
        md5 = hashlib.md5(f"bench-{i}".encode()).hexdigest()
        sha = hashlib.sha256(f"bench-{i}".encode()).hexdigest()
        rows.append(
            {
                "organisation_id": platform,
                "external_id": f"post-{i}",
                "source": "upload",
                "status": "decided",
                "content_type": "image",
                "signals": [{"type": "md5", "value": md5}, {"type": "sha256", "value": sha}],
                "jurisdictions": [],
                "request_fingerprint": "",
                "created_at": now,
                "decided_at": now,
            }
        )
    with db.session() as s:
        s.execute(insert(ContentItem), rows)
        # a confirmation owed to a registered callback is written to the authority's outbox, as in production
        s.add(
            Webhook(
                organisation_id=authority.organisation_id,
                url="https://authority.example/hook",
                secret_encrypted="-",
                events=[],
                enabled=True,
            )
        )
    return platform, authority.organisation_id


def baseline(db: Database, platform: int, ids: list[int]) -> list[float]:
    """Seconds to record one removal decision (decision + audit + decision.changed) per submission."""
    from sqlalchemy import select

    out = []
    for content_id in ids:
        t0 = time.perf_counter()
        with db.session() as s:
            item = s.get(ContentItem, content_id)
            version = (
                s.scalar(
                    select(Decision.version)
                    .where(Decision.content_id == content_id)
                    .order_by(Decision.version.desc())
                    .limit(1)
                )
                or 0
            ) + 1
            d = Decision(
                content_id=content_id,
                organisation_id=platform,
                version=version,
                outcome="remove",
                restrict_in=[],
                automated=True,
                actor="bench",
                reason="baseline",
                evidence={},
                created_at=utcnow(),
            )
            s.add(d)
            s.flush()
            audit.append(s, "bench", "decision_changed", f"content:{content_id}", {"version": version}, platform)
            emit(
                s,
                platform,
                "decision.changed",
                {
                    "content": {"id": content_id, "external_id": item.external_id},
                    "decision": {"version": version, "outcome": "remove"},
                },
            )
        out.append(time.perf_counter() - t0)
    return out


def run(url: str, label: str, args: argparse.Namespace) -> list[tuple]:
    engine = make_engine(url)
    migrate(engine)
    db = Database(engine)
    total = args.orders + args.baseline
    platform, authority_org = seed(db, total)
    with db.session() as s:
        from sqlalchemy import select

        ids = list(s.scalars(select(ContentItem.id).order_by(ContentItem.id)))
    base = baseline(db, platform, ids[args.orders :])
    svc = OrderService(db, Settings())
    action, confirmation, call = [], [], []
    for i in range(args.orders):
        order = {
            "platform": "platform",
            "kind": "removal_order",
            "reference": f"B-{i}",
            "issuer": "bench",
            "member_state": "DE",
            "legal_basis": "Regulation (EU) 2021/784, Art. 3",
            "reasons": "bench",
            "issued_at": "2026-01-01T00:00:00Z",
            "content": [{"content_id": f"post-{i}"}],
        }
        t0 = time.perf_counter()
        got = svc.receive(authority_org, order, actor="bench")
        call.append(time.perf_counter() - t0)
        received = as_utc_iso(got["received_at"])
        action.append((as_utc_iso(got["executed_at"]) - received).total_seconds())
        confirmation.append((as_utc_iso(got["confirmed_at"]) - received).total_seconds())
        assert got["status"] == "executed" and got["content"][0]["hashes_banked"], got
    engine.dispose()
    b50 = float(np.median(base))
    rows = []
    for name, values in (
        ("baseline: record a removal", base),
        ("receipt -> action", action),
        ("receipt -> confirmation", confirmation),
        ("whole receive() call", call),
    ):
        v = np.array(values) * 1000
        rows.append(
            (label, name, len(v), float(np.median(v)), float(np.percentile(v, 99)), float(np.median(v)) / (b50 * 1000))
        )
    return rows


def as_utc_iso(value: str):  # noqa: ANN201 - a datetime
    from datetime import datetime

    return as_utc(datetime.fromisoformat(value.replace("Z", "+00:00")))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--orders", type=int, default=1000)
    ap.add_argument("--baseline", type=int, default=1000, help="submissions whose removal is recorded plainly")
    ap.add_argument(
        "--postgres",
        default=os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"),
    )
    ap.add_argument("--skip-postgres", action="store_true")
    ap.add_argument("--skip-sqlite", action="store_true")
    args = ap.parse_args()
    rows: list[tuple] = []
    if not args.skip_postgres:
        name = f"bastion_bench_orders_{os.getpid()}"
        admin = create_engine(make_url(args.postgres), isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            c.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            rows += run(
                make_url(args.postgres).set(database=name).render_as_string(hide_password=False), "postgresql", args
            )
        finally:
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
    if not args.skip_sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            rows += run(f"sqlite:///{Path(tmp) / 'bench.sqlite3'}", "sqlite", args)
    print(f"\n{'database':<11} {'measure':<28} {'n':>6} {'median ms':>10} {'p99 ms':>9} {'median / baseline':>18}")
    for label, name, n, p50, p99, ratio in rows:
        print(f"{label:<11} {name:<28} {n:6d} {p50:10.1f} {p99:9.1f} {ratio:17.1f}x")
    print(
        f"\n({args.orders} binding orders, one at a time, each naming one submission; auto-execution; target: "
        "median receipt -> action < 1 s. Baseline: one removal decision recorded with its audit record and event.)"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
