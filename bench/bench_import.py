"""Bulk import speed: a million raw PDQ and MD5 hashes from CSV into one bank, on SQLite and PostgreSQL.

Baseline, measured in the same run on the same file: the naive way (one ORM BankEntry and BankSignal per row,
flushed per row to get the entry id, one commit), on a smaller slice (``--baseline-rows``) and extrapolated
linearly to the full size -- said as such in the table. Each database is created fresh by this script (SQLite in a
temporary folder; on PostgreSQL a database of its own, dropped at the end).

    .venv/bin/python bench/bench_import.py            # 1M rows, baseline 20k rows
    .venv/bin/python bench/bench_import.py --quick    # 100k rows, baseline 5k rows, 3 repeats
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bastion import signals as registry
from bastion.banks.importer import lookup_key
from bastion.banks.service import BankService
from bastion.banks.taxonomy import normalize_labels, parse_label_field
from bastion.storage.db import Database, make_engine, migrate
from bastion.storage.models import BankEntry, BankSignal, utcnow

LABELS = [
    "category=branded_publication;entity=ISIS;ideology=islamist",
    "category=glorification;ideology=far-right",
    '{"category": "instructional", "entity": "Atomwaffen Division", "tat_id": "123"}',
    "",
]


def make_csv(path: Path, rows: int, md5_share: float = 0.1) -> None:
    every = max(1, round(1 / md5_share)) if md5_share else 0
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["signal_type", "signal", "labels"])
        for i in range(rows):
            if every and i % every == 0:
                w.writerow(["md5", secrets.token_hex(16), LABELS[i % len(LABELS)]])
            else:
                w.writerow(["pdq", secrets.token_hex(32), LABELS[i % len(LABELS)]])


def fresh_database(kind: str, tmp: Path, pg_admin_url: str, tag: str) -> tuple[Database, callable]:
    if kind == "sqlite":
        url = f"sqlite:///{tmp / f'{tag}.sqlite3'}"
        engine = make_engine(url)
        migrate(engine)
        return Database(engine), engine.dispose
    admin = create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    name = f"bastion_bench_import_{tag}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False))
    migrate(engine)

    def drop() -> None:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return Database(engine), drop


def naive_import(db: Database, bank: str, path: Path, rows: int) -> int:
    """The baseline: per-row ORM objects, one flush per row for the entry id, one transaction."""
    service = BankService(db)
    bank_id = service.get_bank(bank).id
    done = 0
    with db.session() as s, open(path, newline="") as fh:
        reader = csv.reader(fh)
        next(reader)
        for stype, value, labels in reader:
            if done >= rows:
                break
            canon = registry.validate(stype, value)
            entry = BankEntry(
                bank_id=bank_id,
                labels=normalize_labels(parse_label_field(labels)),
                source="other",
                note="",
                origin="",
                added_by="bench",
                added_at=utcnow(),
                enabled=True,
            )
            s.add(entry)
            s.flush()
            s.add(
                BankSignal(
                    entry_id=entry.id, bank_id=bank_id, signal_type=stype, value=canon, lookup_key=lookup_key(canon)
                )
            )
            done += 1
    return done


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=None, help="rows in the CSV (default 1,000,000; --quick 100,000)")
    ap.add_argument("--baseline-rows", type=int, default=None, help="rows for the naive baseline (20,000; 5,000)")
    ap.add_argument("--repeat", type=int, default=None, help="imports per database, median reported (1; --quick 3)")
    ap.add_argument("--quick", action="store_true", help="smaller sizes, a minute or so")
    ap.add_argument(
        "--postgres-url",
        default=os.environ.get("BASTION_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
    )
    ap.add_argument("--no-postgres", action="store_true")
    args = ap.parse_args()
    rows = args.rows or (100_000 if args.quick else 1_000_000)
    base_rows = min(rows, args.baseline_rows or (5_000 if args.quick else 20_000))
    repeat = args.repeat or (3 if args.quick else 1)
    kinds = ["sqlite"] + ([] if args.no_postgres else ["postgresql"])

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}; load average at start {os.getloadavg()[0]:.2f}"
    )
    table = []
    with tempfile.TemporaryDirectory(prefix="bastion-bench-import-") as tmpdir:
        tmp = Path(tmpdir)
        csv_path = tmp / "hashes.csv"
        t0 = time.perf_counter()
        make_csv(csv_path, rows)
        print(
            f"generated {rows:,} rows (90% pdq, 10% md5, 4 label sets) in {time.perf_counter() - t0:.1f}s, "
            f"{csv_path.stat().st_size / 1e6:.0f} MB"
        )
        for kind in kinds:
            times = []
            for i in range(repeat):
                db, close = fresh_database(kind, tmp, args.postgres_url, f"bulk{i}")
                try:
                    BankService(db).create_bank("bench")
                    t0 = time.perf_counter()
                    result = BankService(db).import_file("bench", csv_path, "csv", added_by="bench")
                    times.append(time.perf_counter() - t0)
                    assert result.imported == rows and result.rejected == 0, result.to_dict()
                    assert BankService(db).get_bank("bench").signals == rows
                finally:
                    close()
            bulk = statistics.median(times)
            db, close = fresh_database(kind, tmp, args.postgres_url, "naive")
            try:
                BankService(db).create_bank("bench")
                t0 = time.perf_counter()
                done = naive_import(db, "bench", csv_path, base_rows)
                naive = time.perf_counter() - t0
            finally:
                close()
            naive_full = naive / done * rows
            table.append((kind, "bulk import (BankService.import_file)", rows, bulk, rows / bulk, bulk, 1.0, repeat))
            table.append(
                (
                    kind,
                    f"naive per-row ORM, {done:,} rows, extrapolated",
                    done,
                    naive,
                    done / naive,
                    naive_full,
                    naive_full / bulk,
                    1,
                )
            )
    print(f"load average at end {os.getloadavg()[0]:.2f} (other work on the machine slows every number)")
    print()
    print(
        f"| database | method | rows timed | seconds (median) | rows/s | time for {rows:,} rows | "
        "bulk speed-up | runs |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for kind, method, n, secs, rate, full, ratio, runs in table:
        print(f"| {kind} | {method} | {n:,} | {secs:.2f} | {rate:,.0f} | {full:.1f} s | {ratio:.1f}x | {runs} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
