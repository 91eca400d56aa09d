"""Benchmark: what the law's bookkeeping costs per removal (bastion.compliance).

For each database (SQLite, then PostgreSQL when --postgres is given) it makes a fresh database and times, per item:

- baseline: writing a removal the way the pipeline does (content item, decision, audit record, ``decision.made``
  event) in one transaction;
- the same transaction plus preservation of the content (a --kb KiB upload, AES-256-GCM, its audit record), which
  the pipeline now does for every removal;
- the sweep's work for one restriction (statement of reasons built and validated, notice and its event, in one
  transaction; the package already preserved);
- exporting one Transparency Database batch body of 100 statements and validating it.

It prints medians and p95 per item in milliseconds with the ratio to the baseline of the same run and database.

    .venv/bin/python bench/bench_compliance.py [--items 500] [--kb 64]
        [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bastion import audit
from bastion.accounts.service import AccountService
from bastion.compliance import statements
from bastion.compliance.preservation import key_provider, preserve
from bastion.compliance.sweep import handle_restriction
from bastion.settings import Settings
from bastion.storage.db import Database, make_engine, migrate
from bastion.storage.models import ContentItem, Decision, StatementOfReasons, utcnow
from bastion.webhooks import emit


def _removal(db: Database, settings: Settings, org_id: int, n: int, data: bytes | None) -> tuple[float, int]:
    """One removal in one transaction (with preservation when ``data`` is given); seconds and the decision id."""
    t0 = time.perf_counter()
    with db.session() as s:
        item = ContentItem(
            organisation_id=org_id,
            external_id=f"post-{n}",
            source="upload",
            content_type="image",
            status="decided",
            signals=[{"type": "sha256", "value": f"{n:064x}"}],
            jurisdictions=["DE"],
        )
        s.add(item)
        s.flush()
        d = Decision(
            content_id=item.id,
            organisation_id=org_id,
            version=1,
            outcome="remove",
            automated=True,
            rule="remove-known",
            reason="known content",
            evidence={"matches": [{"bank": "b", "entry_id": n}]},
        )
        s.add(d)
        s.flush()
        audit.append(s, "policy", "decision_made", f"content:{item.id}", {"outcome": "remove"}, organisation_id=org_id)
        emit(s, org_id, "decision.made", {"content": {"id": item.id}, "decision": {"id": d.id}})
        if data is not None:
            preserve(s, key_provider(settings), item, d, days=settings.preservation_days, data=data)
        decision_id = d.id
    return time.perf_counter() - t0, decision_id


def _stats(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[int(0.95 * (len(ordered) - 1))] * 1000


def run(db: Database, items: int, kb: int) -> dict[str, tuple[float, float]]:
    settings = Settings(preservation_key="QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=")  # a fixed test key
    org_id = AccountService(db).create_organisation(f"bench-{uuid.uuid4().hex[:8]}").id
    data = os.urandom(kb * 1024)
    base = [_removal(db, settings, org_id, i, None)[0] for i in range(items)]
    plain_ids = []
    with_preservation = []
    for i in range(items):
        seconds, _ = _removal(db, settings, org_id, items + i, data)
        with_preservation.append(seconds)
    keys = key_provider(settings)
    with db.session() as s:
        from sqlalchemy import select

        plain_ids = list(
            s.scalars(select(Decision.id).where(Decision.organisation_id == org_id).order_by(Decision.id).limit(items))
        )
    swept = []
    for decision_id in plain_ids:
        t0 = time.perf_counter()
        handle_restriction(db, settings, keys, decision_id)
        swept.append(time.perf_counter() - t0)
    exports = []
    for _ in range(max(1, items // 100)):
        t0 = time.perf_counter()
        with db.session() as s:
            rows = statements.query(s, org_id, after_id=0, limit=100)
            body = [r.statement for r in rows]
        statements.check(body)
        exports.append(time.perf_counter() - t0)
    with db.session() as s:
        assert s.query(StatementOfReasons).count() == items
    return {
        "removal (baseline)": _stats(base),
        "removal + preservation in its transaction": _stats(with_preservation),
        "sweep: statement + notice per restriction": _stats(swept),
        "export + validate 100 statements (per batch)": _stats(exports),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--kb", type=int, default=64, help="size of each preserved upload in KiB")
    parser.add_argument("--postgres", default=None, help="server URL; a fresh database is made and dropped")
    args = parser.parse_args()
    results: dict[str, dict[str, tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'bench.sqlite3'}")
        migrate(engine)
        results["sqlite"] = run(Database(engine), args.items, args.kb)
        engine.dispose()
    if args.postgres:
        admin = create_engine(make_url(args.postgres), isolation_level="AUTOCOMMIT")
        name = f"bastion_bench_{uuid.uuid4().hex[:8]}"
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            engine = make_engine(make_url(args.postgres).set(database=name).render_as_string(hide_password=False))
            migrate(engine)
            results["postgresql"] = run(Database(engine), args.items, args.kb)
            engine.dispose()
        finally:
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    print(
        f"{args.items} removals, {args.kb} KiB preserved each; ms per item (per batch for the export), utcnow "
        f"{utcnow():%Y-%m-%d %H:%M}Z"
    )
    print(f"| step | {' | '.join(f'{db} p50 | {db} p95 | {db} ×base' for db in results)} |")
    print("|---" * (1 + 3 * len(results)) + "|")
    steps = next(iter(results.values())).keys()
    for step in steps:
        cells = []
        for r in results.values():
            p50, p95 = r[step]
            cells += [f"{p50:.2f}", f"{p95:.2f}", f"{p50 / r['removal (baseline)'][0]:.2f}"]
        print(f"| {step} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
