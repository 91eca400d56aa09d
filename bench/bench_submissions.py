"""Benchmark: sustained POST /v1/content throughput and latency for ~1 MB JPEGs, SQLite and PostgreSQL.

For each database it starts fresh `bastion serve` processes (one per --processes, each its own Python process
and index, as in production behind a load balancer), banks --banked images for one organisation, then
--clients threads post 1 MB JPEGs for --seconds: half are re-encoded, resized copies of banked images (decided
by hash match in the request: "remove"), half unrelated ("allow"). Reports submissions/s and p50/p99 latency.

Baseline, same run, same files: the raw cost of hashing and matching in one process (Content + signals +
Matcher.match), no HTTP and no database writes.

    .venv/bin/python bench/bench_submissions.py [--seconds 20] [--clients 8] [--processes 2]
        [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
from PIL import Image

from bastion.samples import encode, generate_image

BASTION = str(Path(sys.executable).parent / "bastion")


def one_megabyte_jpeg(seed: int) -> bytes:
    """A ~1 MB photo-like JPEG (generated scene plus sensor-like noise at 1600x1200)."""
    img = generate_image(seed, 1600, 1200)
    noise = np.random.default_rng(seed).normal(0, 12, (1200, 1600, 3))
    arr = np.clip(np.asarray(img, np.float32) + noise, 0, 255).astype(np.uint8)
    return encode(Image.fromarray(arr), quality=93)


def altered(data: bytes, seed: int) -> bytes:
    import io

    img = Image.open(io.BytesIO(data)).convert("RGB")
    img = img.resize((1500, 1125))
    noise = np.random.default_rng(seed + 1000).normal(0, 12, (1125, 1500, 3))
    arr = np.clip(np.asarray(img, np.float32) + noise, 0, 255).astype(np.uint8)
    return encode(Image.fromarray(arr), quality=94)


def multipart(data: bytes, content_id: str) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"content_id\"\r\n\r\n{content_id}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"jurisdictions\"\r\n\r\nFR,DE\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"u.jpg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def wait_ready(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/healthz")
            if c.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"server on port {port} did not start")


def setup_database(env: dict[str, str], banked: list[bytes], workdir: Path) -> str:
    """Migrate, create the organisation and its bank (owned by it), return an API key."""
    from bastion.accounts.service import AccountService
    from bastion.banks.service import BankService
    from bastion.content import Content
    from bastion.signals import compute_all
    from bastion.storage.db import open_database

    db = open_database(url=env["BASTION_DATABASE_URL"])
    accounts = AccountService(db)
    org = accounts.create_organisation("bench")
    key = accounts.create_api_key("bench", "bench", ["submit", "review"])[1]
    banks = BankService(db, organisation_id=org.id)
    banks.create_bank("bench-known")
    for data in banked:
        banks.add_entry("bench-known", compute_all(Content.from_bytes(data)),
                        labels={"category": "branded_publication"}, content_type="image")
    db.engine.dispose()
    return key


def run_load(ports: list[int], key: str, bodies: list[tuple[str, bytes]], seconds: float, clients: int
             ) -> dict[str, list[float]]:
    latencies: dict[str, list[float]] = {"remove": [], "allow": [], "other": []}
    errors: list[str] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    counter = iter(range(10**9))

    def client(i: int) -> None:
        port = ports[i % len(ports)]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        rng = random.Random(i)
        while time.monotonic() < stop_at:
            kind, data = rng.choice(bodies)
            body, ctype = multipart(data, f"bench-{next(counter)}")
            t0 = time.perf_counter()
            conn.request("POST", "/v1/content", body=body,
                         headers={"Authorization": f"Bearer {key}", "Content-Type": ctype})
            resp = conn.getresponse()
            payload = resp.read()
            elapsed = time.perf_counter() - t0
            with lock:
                if resp.status != 201:
                    errors.append(f"{resp.status} {payload[:200]!r}")
                    continue
                outcome = kind if kind in ("remove", "allow") else "other"
                latencies[outcome].append(elapsed)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        print(f"  {len(errors)} errors, first: {errors[0]}")
    return latencies


def baseline(bodies: list[tuple[str, bytes]], banked: list[bytes], rounds: int = 3) -> float:
    """Seconds per submission for hashing + matching alone, in one process (median of rounds)."""
    from bastion.banks.service import BankService
    from bastion.content import Content
    from bastion.matching.matcher import Matcher
    from bastion.settings import Settings
    from bastion.signals import compute_all
    from bastion.storage.db import open_database

    with tempfile.TemporaryDirectory() as tmp:
        db = open_database(url=f"sqlite:///{tmp}/base.sqlite3")
        BankService(db).create_bank("b")
        for data in banked:
            BankService(db).add_entry("b", compute_all(Content.from_bytes(data)))
        matcher = Matcher(db, Settings(data_dir=Path(tmp)))
        matcher.refresh()
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            for _, data in bodies:
                matcher.match(compute_all(Content.from_bytes(data)))
            times.append((time.perf_counter() - t0) / len(bodies))
        return statistics.median(times)


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(values, p)) * 1000 if values else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--banked", type=int, default=20)
    ap.add_argument("--postgres", default=os.environ.get("BENCH_POSTGRES_URL",
                                                         "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--skip-sqlite", action="store_true")
    args = ap.parse_args()

    print("generating ~1 MB JPEGs ...", flush=True)
    banked = [one_megabyte_jpeg(1000 + i) for i in range(args.banked)]
    bodies = [("remove", altered(b, i)) for i, b in enumerate(banked)]
    bodies += [("allow", one_megabyte_jpeg(5000 + i)) for i in range(args.banked)]
    sizes = [len(b) for _, b in bodies]
    print(f"  {len(bodies)} files, median {statistics.median(sizes) / 1e6:.2f} MB")
    base = baseline(bodies, banked)
    print(f"baseline: hash+match in one process {base * 1000:.1f} ms/submission = {1 / base:.1f}/s per core\n")

    targets = []
    if not args.skip_sqlite:
        targets.append("sqlite")
    if args.postgres:
        targets.append("postgresql")
    rows = []
    for target in targets:
        with tempfile.TemporaryDirectory() as tmp:
            env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
            env["BASTION_DATA_DIR"] = tmp
            if target == "sqlite":
                env["BASTION_DATABASE_URL"] = f"sqlite:///{tmp}/bench.sqlite3"
                admin = None
            else:
                from sqlalchemy import create_engine, text
                from sqlalchemy.engine import make_url

                name = f"bastion_bench_{os.getpid()}"
                admin = create_engine(make_url(args.postgres), isolation_level="AUTOCOMMIT")
                with admin.connect() as c:
                    c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                    c.execute(text(f'CREATE DATABASE "{name}"'))
                env["BASTION_DATABASE_URL"] = make_url(args.postgres).set(database=name).render_as_string(
                    hide_password=False)
            os.environ.update({"BASTION_DATA_DIR": tmp, "BASTION_DATABASE_URL": env["BASTION_DATABASE_URL"]})
            key = setup_database(env, banked, Path(tmp))
            ports = [18400 + i for i in range(args.processes)]
            procs = [subprocess.Popen([BASTION, "serve", "--port", str(p), "--workers", "0", "--log-format", "text"],
                                      env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for p in ports]
            try:
                for p in ports:
                    wait_ready(p, time.monotonic() + 120)
                run_load(ports, key, bodies[:4], 3, args.clients)  # warm up: index loaded, connections open
                t0 = time.monotonic()
                lat = run_load(ports, key, bodies, args.seconds, args.clients)
                elapsed = time.monotonic() - t0
            finally:
                for p in procs:
                    p.terminate()
                for p in procs:
                    p.wait(timeout=30)
                if admin is not None:
                    with admin.connect() as c:
                        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            every = lat["remove"] + lat["allow"]
            rows.append((target, len(every) / elapsed, pct(every, 50), pct(every, 99), pct(lat["remove"], 50),
                         pct(lat["remove"], 99), len(lat["remove"])))

    print(f"\n{'database':<11} {'subm/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'match p50':>9} {'match p99':>9} "
          f"{'removed':>7} {'vs hash+match/core':>18}")
    for target, rate, p50, p99, m50, m99, removed in rows:
        print(f"{target:<11} {rate:7.1f} {p50:7.1f} {p99:7.1f} {m50:9.1f} {m99:9.1f} {removed:7d} "
              f"{rate * base:17.2f}x")
    print(f"\n(2-core machine, {args.processes} API processes, {args.clients} client threads on the same machine; "
          "'vs hash+match/core' = submissions/s divided by the single-core raw hash+match rate)")


if __name__ == "__main__":
    main()
