"""Benchmark: the industry forum's two time limits (issue 5, section 4).

(b) retro-scan — an incident's 100 new hashes against 1,000,000 stored recent submissions' signals
    (``bastion.forum.rescan.rescan_recent``) must finish in < 10 s. Each submission carries an image's signals
    (md5, sha256, PDQ), as ``content_items.signals`` stores them; the 100 new hashes are 80 PDQ and 20 md5, and
    some submissions are planted near (PDQ within 0..25 bits) or equal (md5) to them, so the bench also checks that
    exactly the planted ones are found. Baseline, same run, same rows: a naive per-row Python loop (read every
    submission's signal list, decode its JSON, compare each PDQ with each new hash by ``int`` XOR and popcount,
    look exact values up in a set).

(a) hub delta — a hub holding 1,000,000 hashes (seeded straight into its tables, spread over 20 members) serving
    20 members' syncs; a delta of 10,000 new hashes must reach a member in < 2 s. The hub runs under uvicorn in a
    child process; a contributor pushes the delta (one signed batch), then one member, and then all 20 at once,
    fetch it from their cursors with ForumExchange (every signature verified, as a member does). Baseline, same
    run: one member re-downloading the whole feed (raw pages, no verification).

Prints one table per part: medians of ``--repeat`` runs and the ratio to the baseline.

    .venv/bin/python bench/bench_forum.py [--part a|b|all] [--submissions 1000000] [--new 100] [--repeat 3]
        [--baseline-repeat 1] [--hub-hashes 1000000] [--delta 10000] [--members 20] [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres]
        [--skip-sqlite] [--skip-postgres] [--quick]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from bastion.accounts.service import AccountService
from bastion.exchanges.base import ExchangedSignal
from bastion.forum.rescan import rescan_recent
from bastion.storage.db import Database, make_engine, migrate
from bastion.storage.models import ContentItem, ForumChange, ForumMember

PDQ_NEW, MD5_NEW = 80, 20
PLANTED_PDQ, PLANTED_MD5 = 200, 40
THRESHOLD = 31


# -- (b) retro-scan ---------------------------------------------------------------------------------------------------
def flip(value: str, bits: int, rng: random.Random) -> str:
    n = int(value, 16)
    for b in rng.sample(range(256), bits):
        n ^= 1 << b
    return f"{n:064x}"


def make_rows(n: int, new_pdq: list[str], new_md5: list[str], seed: int = 5) -> tuple[list[tuple[str, str]], int]:
    """(external id, signals JSON) for ``n`` submissions, and how many (submission, new hash) pairs were planted."""
    rng = random.Random(seed)
    blob = rng.randbytes(n * (32 + 16 + 32)).hex()
    planted_pdq = {rng.randrange(n): i for i in range(PLANTED_PDQ)}
    planted_md5 = {rng.randrange(n): i for i in range(PLANTED_MD5)}
    rows = []
    for k in range(n):
        o = k * 160
        pdq, md5, sha = blob[o : o + 64], blob[o + 64 : o + 96], blob[o + 96 : o + 160]
        if k in planted_pdq:
            pdq = flip(new_pdq[planted_pdq[k] % len(new_pdq)], planted_pdq[k] % 26, rng)
        if k in planted_md5:
            md5 = new_md5[planted_md5[k] % len(new_md5)]
        signals = [
            {"type": "md5", "value": md5},
            {"type": "sha256", "value": sha},
            {"type": "pdq", "value": pdq, "quality": 90},
        ]
        rows.append((f"upload-{k}", json.dumps(signals)))
    return rows, len(planted_pdq) + len(planted_md5)


def seed_submissions(db: Database, org: int, rows: list[tuple[str, str]], now: datetime) -> None:
    """Insert the submissions with the driver's bulk path (COPY on PostgreSQL), received over the last 12 hours."""
    n = len(rows)
    raw = db.engine.raw_connection()
    try:
        cur = raw.cursor()
        if db.engine.dialect.name == "postgresql":
            cols = (
                "organisation_id, external_id, jurisdictions, source, signals, status, request_fingerprint, created_at"
            )
            with cur.copy(f"COPY content_items ({cols}) FROM STDIN") as copy:  # type: ignore[attr-defined]
                for k, (external_id, signals) in enumerate(rows):
                    at = now - timedelta(seconds=43_200 * (n - k) / n)
                    copy.write_row((org, external_id, "[]", "upload", signals, "decided", "", at))
        else:
            cur.executemany(
                "INSERT INTO content_items (organisation_id, external_id, jurisdictions, source, signals, status,"
                " request_fingerprint, created_at) VALUES (?, ?, '[]', 'upload', ?, 'decided', '', ?)",
                [
                    (
                        org,
                        external_id,
                        signals,
                        (now - timedelta(seconds=43_200 * (n - k) / n))
                        .replace(tzinfo=None)
                        .isoformat(" ", "microseconds"),
                    )
                    for k, (external_id, signals) in enumerate(rows)
                ],
            )
        cur.execute("ANALYZE content_items")
        raw.commit()
    finally:
        raw.close()


def naive_rescan(db: Database, org: int, new: list[ExchangedSignal], since: datetime) -> int:
    """The baseline: every row's signal list decoded in Python, every PDQ compared with every new hash."""
    pdq = [int(s.value, 16) for s in new if s.signal_type == "pdq"]
    exact = {(s.signal_type, s.value) for s in new if s.signal_type != "pdq"}
    hits = 0
    with db.session() as s:
        stmt = select(ContentItem.id, ContentItem.signals).where(
            ContentItem.organisation_id == org, ContentItem.created_at >= since
        )
        for _id, signals in s.execute(stmt.execution_options(yield_per=20_000)):
            for sig in signals:
                if sig["type"] == "pdq":
                    v = int(sig["value"], 16)
                    hits += sum(1 for q in pdq if (v ^ q).bit_count() <= THRESHOLD)
                elif (sig["type"], sig["value"]) in exact:
                    hits += 1
    return hits


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def bench_rescan(url: str, label: str, args: argparse.Namespace) -> list[tuple[str, ...]]:
    engine = make_engine(url)
    migrate(engine)
    db = Database(engine)
    org = AccountService(db).create_organisation("bench-platform").id
    rng = random.Random(11)
    new_pdq = [f"{rng.getrandbits(256):064x}" for _ in range(PDQ_NEW * args.new // 100)]
    new_md5 = [hashlib.md5(str(i).encode()).hexdigest() for i in range(MD5_NEW * args.new // 100)]
    new = [ExchangedSignal("pdq", v, source_id=f"p{i}") for i, v in enumerate(new_pdq)]
    new += [ExchangedSignal("md5", v, source_id=f"m{i}") for i, v in enumerate(new_md5)]
    now = datetime.now(UTC)
    t0 = time.perf_counter()
    rows, planted = make_rows(args.submissions, new_pdq, new_md5)
    seed_submissions(db, org, rows, now)
    del rows
    print(f"  {label}: seeded {args.submissions:,} submissions in {time.perf_counter() - t0:.1f} s", flush=True)
    since = now - timedelta(hours=24)
    fast, hits = timed(lambda: rescan_recent(db, org, new, since), args.repeat)
    reference = {(h.content_id, h.signal.source_id) for h in hits}
    slow, naive_hits = timed(lambda: naive_rescan(db, org, new, since), args.baseline_repeat)
    if len(reference) != naive_hits or len(reference) < planted * 0.9:
        sys.exit(f"{label}: rescan found {len(reference)} pairs, the naive loop {naive_hits} (planted {planted})")
    engine.dispose()
    target = "< 10 s" if args.submissions >= 1_000_000 else f"(target is for 1M: {args.submissions:,} here)"
    return [
        (
            label,
            "naive per-row Python loop (baseline)",
            f"{args.submissions:,}",
            str(len(new)),
            f"{slow:.2f}",
            "1.0x",
            str(naive_hits),
            "",
        ),
        (
            label,
            "rescan_recent (chunked text + regex + NumPy popcount)",
            f"{args.submissions:,}",
            str(len(new)),
            f"{fast:.2f}",
            f"{slow / fast:.1f}x faster",
            str(len(reference)),
            "PASS " + target if fast < 10 else "FAIL " + target,
        ),
    ]


# -- (a) hub delta ---------------------------------------------------------------------------------------------------
def hub_app():  # noqa: ANN201 - uvicorn --factory target: the hub over BENCH_HUB_DB, in its own process
    from bastion.forum.api import create_hub_app

    return create_hub_app(Database(make_engine(os.environ["BENCH_HUB_DB"])))


def seed_hub(db: Database, n: int, members: list[str]) -> None:
    """``n`` contributions spread over the members, already in the feed (their signatures are placeholders: no
    member re-verifies them in this bench, which starts every member's cursor after them)."""
    rng = random.Random(3)
    with db.session() as s:
        ids = dict(s.execute(select(ForumMember.name, ForumMember.id)).all())
    now = datetime.now(UTC)
    raw = db.engine.raw_connection()
    try:
        cur = raw.cursor()
        chunk = 100_000
        for start in range(0, n, chunk):
            count = min(chunk, n - start)
            blob = rng.randbytes(count * 32).hex()
            rows = [
                (
                    ids[members[(start + k) % len(members)]],
                    "pdq",
                    blob[k * 64 : (k + 1) * 64],
                    blob[k * 64 : (k + 1) * 64],
                    '{"category": "propaganda"}',
                    1,
                    k,
                    count,
                    "x" * 86,
                    "",
                    "unconfirmed",
                    "{}",
                )
                for k in range(count)
            ]
            cols = (
                "member_id, signal_type, value, lookup_key, labels, batch, batch_index, batch_size, signature, proof,"
                " consensus, feedback_counts, created_at"
            )
            if db.engine.dialect.name == "postgresql":
                with cur.copy(f"COPY forum_contributions ({cols}) FROM STDIN") as copy:  # type: ignore[attr-defined]
                    for r in rows:
                        copy.write_row((*r, now))
            else:
                at = now.replace(tzinfo=None).isoformat(" ", "microseconds")
                cur.executemany(
                    f"INSERT INTO forum_contributions ({cols}) VALUES ({','.join('?' * 13)})",
                    [(*r, at) for r in rows],
                )
        cur.execute(
            "INSERT INTO forum_changes (contribution_id, kind, priority, at) "
            "SELECT id, 'new', false, created_at FROM forum_contributions ORDER BY id"
        )
        cur.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()


class HubProcess:
    """The hub app under uvicorn in a child process (its CPU is not the members')."""

    def __init__(self, url: str) -> None:
        import socket
        import subprocess

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        env = {**os.environ, "BENCH_HUB_DB": url}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "bench_forum:hub_app",
                "--factory",
                "--app-dir",
                str(Path(__file__).parent),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            env=env,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        import httpx

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/forum/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        sys.exit("the hub did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def bench_hub(url: str, label: str, args: argparse.Namespace) -> list[tuple[str, ...]]:
    import threading

    import httpx

    from bastion.forum import signing
    from bastion.forum.exchange import ForumExchange
    from bastion.forum.hub import HubService, make_cursor

    engine = make_engine(url)
    migrate(engine)
    db = Database(engine)
    hub = HubService(db)
    names = [f"member-{i:02d}" for i in range(args.members)]
    keys, signing_keys = {}, {}
    for name in [*names, "contributor"]:
        keys[name] = hub.add_member(name)[1]
        signing_keys[name] = signing.new_private_key()
        hub.register_key(name, signing.public_key_text(signing_keys[name]))
    t0 = time.perf_counter()
    seed_hub(db, args.hub_hashes, names)
    with db.session() as s:
        end = s.scalar(select(func.max(ForumChange.seq))) or 0
    print(f"  {label}: hub seeded with {args.hub_hashes:,} hashes in {time.perf_counter() - t0:.1f} s", flush=True)
    served = HubProcess(url)
    try:
        contributor = ForumExchange("forum", served.url, keys["contributor"], signing_keys["contributor"], timeout=300)
        pins = {"contributor": signing.public_key_text(signing_keys["contributor"])}
        rng = random.Random(17)
        rows: list[tuple[str, ...]] = []
        for round_no in range(args.repeat):
            delta = [
                ExchangedSignal("pdq", f"{rng.getrandbits(256):064x}", {"category": "propaganda"})
                for _ in range(args.delta)
            ]
            cursor = make_cursor(end, 0)
            t_push = time.perf_counter()
            contributor.push(delta)
            push_s = time.perf_counter() - t_push
            end += args.delta

            def sync(name: str, out: dict[str, float], start: float, cursor: str = cursor) -> None:
                ex = ForumExchange("forum", served.url, keys[name], pinned_keys=pins, timeout=120)
                got, c = 0, cursor
                while True:
                    page = ex.fetch(c, 10_000)  # fetched and every signature verified, as a member does
                    got += len(page.signals)
                    c = page.next_cursor
                    if not page.more:
                        break
                assert got == args.delta and not ex.rejected, (got, ex.rejected[:3])
                out[name] = time.perf_counter() - start
                ex.close()

            one: dict[str, float] = {}
            sync(names[0], one, time.perf_counter())
            together: dict[str, float] = {}
            start = time.perf_counter()
            threads = [threading.Thread(target=sync, args=(n, together, start)) for n in names]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            lat = sorted(together.values())
            rows.append((round_no, push_s, one[names[0]], statistics.median(lat), lat[-1]))
        # baseline: one member re-downloading the whole feed (every page of the hub's JSON, no verification)
        t_full = time.perf_counter()
        with httpx.Client(timeout=300, headers={"Authorization": f"Bearer {keys[names[0]]}"}) as client:
            c, total = None, 0
            while True:
                body = client.get(
                    served.url + "/forum/v1/signals", params={"limit": 10_000, **({"after": c} if c else {})}
                ).json()
                total += len(body["changes"])
                c = body["next_cursor"]
                if not body["more"]:
                    break
        full_s = time.perf_counter() - t_full
    finally:
        served.stop()
        engine.dispose()
    one_med = statistics.median(r[2] for r in rows)
    med = statistics.median(r[3] for r in rows)
    worst = statistics.median(r[4] for r in rows)
    push_med = statistics.median(r[1] for r in rows)
    n = f"{args.hub_hashes:,}"
    ok = "PASS < 2 s" if one_med < 2 else "FAIL < 2 s"
    return [
        (label, n, "full re-download of the feed, 1 member (baseline)", f"{total:,}", f"{full_s:.2f}", "1.0x", ""),
        (label, n, "contributor pushes the delta (signed batch)", f"{args.delta:,}", f"{push_med:.2f}", "", ""),
        (
            label,
            n,
            "delta reaches 1 member (fetch + verify)",
            f"{args.delta:,}",
            f"{one_med:.2f}",
            f"{full_s / one_med:.0f}x faster",
            ok,
        ),
        (
            label,
            n,
            f"delta reaches {args.members} members at once: median",
            f"{args.delta:,}",
            f"{med:.2f}",
            f"{full_s / med:.0f}x faster",
            "",
        ),
        (
            label,
            n,
            f"delta reaches {args.members} members at once: last",
            f"{args.delta:,}",
            f"{worst:.2f}",
            f"{full_s / worst:.0f}x faster",
            "",
        ),
    ]


def print_table(title: str, header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")


def on_databases(
    args: argparse.Namespace, fn: Callable[[str, str, argparse.Namespace], list[tuple[str, ...]]]
) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    if not args.skip_sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            out += fn(f"sqlite:///{Path(tmp) / 'bench.sqlite3'}", "SQLite", args)
    if not args.skip_postgres and args.postgres:
        name = f"bench_forum_{os.getpid()}"
        admin = create_engine(make_url(args.postgres), isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            c.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            url = make_url(args.postgres).set(database=name).render_as_string(hide_password=False)
            out += fn(url, "PostgreSQL", args)
        finally:
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["a", "b", "all"], default="all")
    parser.add_argument("--submissions", type=int, default=1_000_000)
    parser.add_argument("--hub-hashes", type=int, default=1_000_000)
    parser.add_argument("--delta", type=int, default=10_000)
    parser.add_argument("--members", type=int, default=20)
    parser.add_argument("--new", type=int, default=100, help="new hashes in the incident (80%% PDQ, 20%% md5)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline-repeat", type=int, default=1, help="the naive loop is slow: runs of it")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--quick", action="store_true", help="100,000 submissions, one run each")
    args = parser.parse_args()
    if args.quick:
        args.submissions, args.repeat, args.baseline_repeat = 100_000, 1, 1
        args.hub_hashes, args.delta, args.members = 100_000, 2_000, 5
    if args.part in ("a", "all"):
        rows = on_databases(args, bench_hub)
        print_table(
            f"(a) hub delta: {args.delta:,} new hashes to members of a hub holding {args.hub_hashes:,}",
            ("database", "hub hashes", "what", "rows", "median s", "ratio", "target"),
            rows,
        )
    if args.part in ("b", "all"):
        rows = on_databases(args, bench_rescan)
        print_table(
            "(b) incident retro-scan: new hashes against stored recent submissions' signals",
            ("database", "method", "submissions", "new hashes", "median s", "ratio", "hits", "target"),
            rows,
        )


if __name__ == "__main__":
    main()
