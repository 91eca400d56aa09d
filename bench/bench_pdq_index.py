"""Benchmark: Bastion's PDQ index against FAISS (the baseline HMA uses), exact radius-31 search, one thread.

For each dataset (uniform random hashes; clustered near-duplicate families) and size, every engine is built on the
same hashes and runs the same queries (half bank members with 5-25 bits flipped, half random):

* Bastion C / Bastion NumPy: bastion.matching.pdq_index.PDQIndex with each engine (NumPy only up to 1M by default)
* FAISS multihash: IndexBinaryMultiHash(256, nhash=16, b=16), nflip=1 (exact at radius 31 by pigeonhole)
* FAISS flat: IndexBinaryFlat range search, i.e. brute force; it is the ground truth for recall

FAISS range search is strict (distance < radius), so it is asked for radius + 1. Queries/s is the median over rounds
of one batch call per engine, by wall clock and per CPU second of this process (the second is less disturbed by
other load on a shared machine). Memory is the process RSS growth while the engine is alive (measured), and for
Bastion also its own computed array sizes. Fresh memory is pre-faulted once at start, because on VMs the first touch
of a page costs far more than the algorithm does, and whichever engine ran first would pay it.

    .venv/bin/python bench/bench_pdq_index.py                 # 1M and 10M (needs ~8 GB RAM, several minutes)
    .venv/bin/python bench/bench_pdq_index.py --quick         # 100k, a minute
    .venv/bin/python bench/bench_pdq_index.py --sizes 1000000 --datasets clustered
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy/faiss load OpenMP

import gc
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from bastion.matching.pdq_index import ENGINES, PDQIndex

RADIUS = 31


def pin_malloc() -> bool:
    """Make glibc return every large block to the OS on free, so RSS growth measures what an engine holds (by
    default glibc raises its mmap threshold after frees and keeps later arrays in a heap it never trims)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-3, 1 << 20)) and bool(libc.mallopt(-1, 1 << 20))  # M_MMAP_/M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        return False


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRss:
    """Samples RSS in a thread to catch the peak while a build runs."""

    def __enter__(self):
        self.peak, self._stop = rss(), threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, rss())


def flip_bits(rng: np.random.Generator, hashes: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Copy of hashes with counts[i] distinct random bits flipped in row i."""
    out = hashes.copy()
    rows = np.arange(len(out))
    kmax = int(counts.max()) if len(counts) else 0
    keys = rng.random((len(out), 256)).argsort(axis=1)[:, :kmax] if kmax and len(out) <= 20_000 else None
    for j in range(kmax):
        pos = keys[:, j] if keys is not None else rng.integers(0, 256, len(out))  # big sets: repeats allowed
        sel = j < counts
        out[rows[sel], pos[sel] >> 3] ^= (1 << (pos[sel] & 7)).astype(np.uint8)
    return out


def dataset(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "uniform":
        return rng.integers(0, 256, (n, 32), dtype=np.uint8)
    centres = rng.integers(0, 256, (max(1, n // 10), 32), dtype=np.uint8)  # families of ~10 near-duplicates
    family = rng.integers(0, len(centres), n)
    return flip_bits(rng, centres[family], rng.integers(0, 9, n))


def make_queries(bank: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    half = count // 2
    members = bank[rng.integers(0, len(bank), half)]
    perturbed = flip_bits(rng, members, rng.integers(5, 26, half))
    return np.concatenate([perturbed, rng.integers(0, 256, (count - half, 32), dtype=np.uint8)])


class Bastion:
    def __init__(self, engine: str):
        self.name = f"Bastion {'C' if engine == 'c' else 'NumPy'}"
        self.engine = engine

    def build(self, hashes):
        self.index = PDQIndex(engine=self.engine)
        self.index.add(np.arange(len(hashes), dtype=np.int64), hashes)

    def search(self, queries):
        return [set(ids.tolist()) for ids, _ in self.index.query_many(queries, RADIUS)]

    def computed_bytes(self):
        return self.index.memory_bytes


class BastionSingle(Bastion):
    """The same index called one query at a time (what a request handler does)."""

    def __init__(self, shared: Bastion):
        super().__init__("c")
        self.name = "Bastion C, query() per hash"
        self.shared = shared

    def build(self, hashes):
        self.index = self.shared.index

    def search(self, queries):
        return [set(self.index.query(q, RADIUS)[0].tolist()) for q in queries]


class Faiss:
    def __init__(self, kind: str):
        self.kind = kind
        self.name = "FAISS multihash 16x16 nflip=1" if kind == "multihash" else "FAISS flat (brute force)"

    def build(self, hashes):
        import faiss

        if self.kind == "multihash":
            self.index = faiss.IndexBinaryMultiHash(256, 16, 16)
            self.index.nflip = 1
        else:
            self.index = faiss.IndexBinaryFlat(256)
        self.index.add(hashes)

    def search(self, queries):
        lims, _, labels = self.index.range_search(queries, RADIUS + 1)  # FAISS: distance < radius
        return [set(labels[lims[i] : lims[i + 1]].tolist()) for i in range(len(queries))]

    def computed_bytes(self):
        return None


def run_engine(eng, hashes, queries, truth_q, rounds):
    gc.collect()
    before = rss()
    t = time.perf_counter()
    with PeakRss() as peak:
        eng.build(hashes)
    build_s = time.perf_counter() - t
    held = rss() - before
    found = eng.search(truth_q)
    walls, cpus = [], []
    for _ in range(rounds):
        w, c = time.perf_counter(), time.process_time()
        eng.search(queries)
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return {
        "engine": eng.name,
        "build_s": build_s,
        "qps": len(queries) / statistics.median(walls),
        "qps_cpu": len(queries) / max(1e-9, statistics.median(cpus)),
        "nq": len(queries),
        "rss_mb": held / 2**20,
        "peak_mb": (peak.peak - before) / 2**20,
        "computed_mb": (eng.computed_bytes() or 0) / 2**20 or None,
        "found": found,
    }


def persistence(index: PDQIndex, workdir: Path) -> dict:
    target = workdir / "pdq"
    t = time.perf_counter()
    index.save(target, {"bench": True})
    save_s = time.perf_counter() - t
    disk = sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
    t = time.perf_counter()
    loaded, _ = PDQIndex.load(target)
    load_s = time.perf_counter() - t
    ok = len(loaded) == len(index)
    del loaded
    shutil.rmtree(target)
    return {"save_s": save_s, "load_s": load_s, "disk_mb": disk / 2**20, "ok": ok}


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def report(kind, n, rows, truth, store):
    print(f"\n### {kind}, {n:,} hashes, radius {RADIUS}\n")
    print("| engine | build s | queries/s (wall) | queries/s per CPU-s | queries | RSS held MB | build peak MB "
          "| computed MB | recall | extra hits | vs FAISS multihash |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    base = next((r["qps"] for r in rows if r["engine"].startswith("FAISS multihash")), None)
    total = sum(len(t) for t in truth)
    for r in rows:
        hit = sum(len(f & t) for f, t in zip(r["found"], truth, strict=True))
        extra = sum(len(f - t) for f, t in zip(r["found"], truth, strict=True))
        ratio = f"{r['qps'] / base:.1f}x" if base else "-"
        print(f"| {r['engine']} | {r['build_s']:.1f} | {r['qps']:,.0f} | {r['qps_cpu']:,.0f} | {r['nq']} "
              f"| {r['rss_mb']:,.0f} | {r['peak_mb']:,.0f} | {fmt(r['computed_mb'], ',.0f')} "
              f"| {hit / total if total else 1:.4f} | {extra} | {ratio} |")  # fmt: skip
    print(f"\nGround truth: {len(truth)} queries, {total} hits within {RADIUS} (FAISS flat).")
    if store:
        print(f"Bastion save {store['save_s']:.2f} s, load (read + verify SHA-256 + rebuild tables) "
              f"{store['load_s']:.2f} s, {store['disk_mb']:,.0f} MB on disk, reload ok: {store['ok']}.")  # fmt: skip
    sys.stdout.flush()


def measure(kind: str, n: int, args) -> None:
    """One dataset at one size, in a fresh process so each engine's RSS growth is its own."""
    import faiss

    faiss.omp_set_num_threads(1)
    pin_malloc()
    nq, slow_nq = (400, 100) if args.quick else (args.queries, args.slow_queries)
    rng = np.random.default_rng(n + len(kind))
    hashes = dataset(kind, n, rng)
    queries = make_queries(hashes, nq, rng)
    slow_q, truth_q = queries[:: max(1, nq // slow_nq)], queries[:: max(1, nq // args.truth_queries)]
    flat_row = run_engine(Faiss("flat"), hashes, slow_q[: max(10, slow_nq // 4)], truth_q, 1)
    rows, store = [], None
    if "c" in ENGINES:
        c = Bastion("c")
        rows.append(run_engine(c, hashes, queries, truth_q, args.rounds))
        rows.append(run_engine(BastionSingle(c), hashes, queries[::2], truth_q, args.rounds))
        rows[-1].update(rss_mb=0.0, peak_mb=0.0, build_s=0.0, computed_mb=None)  # shares the index above
        workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-pdq-"))
        store = persistence(c.index, workdir)
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        del c
    if n <= args.numpy_max or not rows:
        rows.append(run_engine(Bastion("numpy"), hashes, slow_q, truth_q, args.rounds))
    gc.collect()
    rows.append(run_engine(Faiss("multihash"), hashes, slow_q, truth_q, args.rounds))
    rows.append(flat_row)
    report(kind, n, rows, flat_row["found"], store)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000000,10000000", help="comma-separated bank sizes")
    ap.add_argument("--datasets", default="uniform,clustered")
    ap.add_argument("--quick", action="store_true", help="100k hashes, fewer queries")
    ap.add_argument("--queries", type=int, default=2000, help="queries per round for the fast engines")
    ap.add_argument("--slow-queries", type=int, default=200, help="queries per round for FAISS and NumPy")
    ap.add_argument("--truth-queries", type=int, default=200, help="queries checked against brute force")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--numpy-max", type=int, default=1_000_000, help="largest size the NumPy engine runs at")
    ap.add_argument("--prefault-gb", type=float, default=None, help="touch this much memory first (default: auto)")
    ap.add_argument("--workdir", type=Path, default=None, help="where save/load is timed (default: a temp dir)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)  # "kind:n", run by main() itself
    args = ap.parse_args()
    if args.child:
        kind, n = args.child.split(":")
        measure(kind, int(n), args)
        return
    import faiss

    sizes = [100_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    gb = args.prefault_gb if args.prefault_gb is not None else min(10.0, max(sizes) * 6.5e-7)
    t = time.perf_counter()
    np.ones(int(gb * 2**30), np.uint8)  # the kernel hands these pages to the children below
    print(f"# PDQ index benchmark\n\n{platform.node()}: {os.cpu_count()} CPUs ({platform.processor() or '?'}), "
          f"Python {platform.python_version()}, NumPy {np.__version__}, FAISS {faiss.__version__}, engines "
          f"{sorted(ENGINES)}; load average at start {os.getloadavg()[0]:.1f}; pre-faulted {gb:.1f} GB in "
          f"{time.perf_counter() - t:.1f} s; one thread per engine; one process per table.")  # fmt: skip
    sys.stdout.flush()
    for kind in args.datasets.split(","):
        for n in sizes:
            subprocess.run([sys.executable, __file__, *sys.argv[1:], "--child", f"{kind}:{n}"], check=True)
    print(f"\nload average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
