"""Benchmark: near-duplicate text matching - accuracy of text_minhash, and MinHashIndex against a full scan.

1. Accuracy (what the shingle size and threshold were chosen from): generated documents of 100-1000 words
   (bastion.samples.documents); for each, a copy with 5% (and 10%) of its words replaced, inserted or deleted. The
   table gives the estimated similarity of copies (min, 1st percentile, median) and of all unrelated pairs (max,
   99.9th percentile), and the false negative / false positive rates at several thresholds, for 2- to 5-word
   shingles. The shipped configuration is 3-word shingles, threshold 0.5.
2. Index: N stored signatures (unrelated texts, plus the documents above), queried with the edited copies.
   Median query time of MinHashIndex.query against the baseline, a NumPy full scan of the same signatures in the
   same run, the ratio, and whether the answers are identical.
3. Hashing cost: normalise + MinHash of documents of several sizes; baseline: SHA-256 of the same text.

    .venv/bin/python bench/bench_text_minhash.py [--quick] [--docs 200] [--sizes 10000 100000]
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import time

import numpy as np

from bastion.matching.text_index import MinHashIndex
from bastion.samples.documents import edit_document, make_document, make_vocabulary
from bastion.signals.text import (
    NUM_PERM,
    decode_signature,
    encode_signature,
    minhash_of_text,
    minhash_signature,
    normalize_text,
    shingle_hashes,
)


def accuracy(n_docs: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    vocab = make_vocabulary(rng)
    docs = [make_document(rng, vocab, int(rng.integers(100, 1001))) for _ in range(n_docs)]
    variants = {share: [edit_document(rng, vocab, d, share) for d in docs] for share in (0.05, 0.10)}
    thresholds = (0.3, 0.4, 0.5, 0.6, 0.7)
    pairs = n_docs * (n_docs - 1) // 2
    print(f"\n1. Accuracy: {n_docs} documents of 100-1000 words, {pairs} unrelated pairs, N={NUM_PERM}")
    head = f"{'k':>2} {'edit':>5} | {'copy min':>8} {'p1':>6} {'median':>6} | {'unrel max':>9} {'p99.9':>6} |"
    print(head + "".join(f" FN@{t:<4} FP@{t:<4}" for t in thresholds))
    for k in (2, 3, 4, 5):

        def sig(words: list[str], k: int = k) -> np.ndarray:
            return minhash_signature(shingle_hashes(" ".join(words), k))

        base = np.stack([sig(d) for d in docs])
        unrelated = np.concatenate([(base[i + 1 :] == base[i]).mean(axis=1) for i in range(len(base) - 1)])
        for share, edited in variants.items():
            near = np.array([(sig(e) == base[i]).mean() for i, e in enumerate(edited)])
            row = (
                f"{k:>2} {share:>5.0%} | {near.min():>8.3f} {np.percentile(near, 1):>6.3f} {np.median(near):>6.3f} |"
                f" {unrelated.max():>9.3f} {np.percentile(unrelated, 99.9):>6.3f} |"
            )
            print(row + "".join(f" {np.mean(near < t):>7.3f} {np.mean(unrelated >= t):>7.4f}" for t in thresholds))


def full_scan(matrix: np.ndarray, ids: np.ndarray, value: str, threshold: float) -> list[tuple[int, float]]:
    """The baseline: compare the query with every stored signature."""
    sims = np.count_nonzero(matrix == decode_signature(value), axis=1) / NUM_PERM
    hit = np.flatnonzero(sims >= threshold)
    order = np.lexsort((ids[hit], -sims[hit]))
    return [(int(ids[hit][j]), float(sims[hit][j])) for j in order]


def index_speed(sizes: list[int], n_docs: int, n_queries: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    vocab = make_vocabulary(rng)
    docs = [make_document(rng, vocab, int(rng.integers(100, 1001))) for _ in range(n_docs)]
    planted = [minhash_of_text(" ".join(d)) for d in docs]
    queries = [minhash_of_text(" ".join(edit_document(rng, vocab, d, 0.05))) for d in docs[:n_queries]]
    print(f"\n2. Index vs full scan: threshold 0.5, {len(queries)} queries (5%-edited copies of stored documents)")
    print(f"{'stored':>8} | {'build s':>8} | {'index ms':>9} {'scan ms':>8} {'speed-up':>8} | {'same answers':>12}")
    for n in sizes:
        filler = rng.integers(0, 2**32 - 1, (n - len(planted), NUM_PERM), dtype=np.uint32)
        values = [encode_signature(s) for s in filler] + planted
        index = MinHashIndex(0.5)
        t0 = time.perf_counter()
        index.add(list(range(n)), values)
        build = time.perf_counter() - t0
        matrix = np.concatenate([filler, np.stack([decode_signature(v) for v in planted])])
        ids = np.arange(n)

        t_index, t_scan, same = [], [], 0
        for q in queries:
            t0 = time.perf_counter()
            a = index.query(q)
            t_index.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            b = full_scan(matrix, ids, q, 0.5)
            t_scan.append(time.perf_counter() - t0)
            same += a == b
        mi, ms = statistics.median(t_index) * 1e3, statistics.median(t_scan) * 1e3
        print(f"{n:>8} | {build:>8.2f} | {mi:>9.3f} {ms:>8.3f} {ms / mi:>7.1f}x | {same:>5}/{len(queries):<6}")


def hashing_cost(seed: int, rounds: int) -> None:
    rng = np.random.default_rng(seed)
    vocab = make_vocabulary(rng)
    print("\n3. Hashing cost per document (median of rounds): normalise + MinHash, against SHA-256 of the text")
    print(f"{'words':>8} {'chars':>9} | {'sha256 ms':>9} | {'normalise ms':>12} {'minhash ms':>10} | {'vs sha256':>9}")
    for n_words in (100, 1000, 10_000, 100_000):
        text = " ".join(make_document(rng, vocab, n_words))
        t_sha, t_norm, t_mh = [], [], []
        for _ in range(rounds):
            t0 = time.perf_counter()
            hashlib.sha256(text.encode()).hexdigest()
            t1 = time.perf_counter()
            normal = normalize_text(text)
            t2 = time.perf_counter()
            minhash_of_text(normal)
            t3 = time.perf_counter()
            t_sha.append(t1 - t0), t_norm.append(t2 - t1), t_mh.append(t3 - t2)
        s, nm, mh = (statistics.median(t) * 1e3 for t in (t_sha, t_norm, t_mh))
        print(f"{n_words:>8} {len(text):>9} | {s:>9.3f} | {nm:>12.2f} {mh:>10.2f} | {(nm + mh) / s:>8.0f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes (about a minute)")
    parser.add_argument("--docs", type=int, default=200, help="documents for the accuracy table")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000], help="index sizes")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.quick:
        args.docs, args.sizes = min(args.docs, 100), [2_000, 10_000]
    normalize_text("warm up")  # builds the character tables once, outside the timings
    accuracy(args.docs, args.seed)
    index_speed(args.sizes, n_docs=100, n_queries=100, seed=args.seed)
    hashing_cost(args.seed, rounds=3 if args.quick else 5)


if __name__ == "__main__":
    main()
