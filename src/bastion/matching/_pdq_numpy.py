"""Search plans and the pure-NumPy engine of the PDQ index (the fallback when the C extension is not built).

Why a separate module: pdq_index.py owns the public API, the mutable state and persistence; this module holds the
two pieces both engines must agree on exactly: how a radius becomes a probe plan (``plan``) and how the tables are
laid out (``build``, which produces byte-identical arrays to the C ``build``). The NumPy ``search`` gives the same
results as the C one, sorted the same way; tests compare them.

Plan (generalised pigeonhole, see docs/pdq_index.md): the 256 bits are 8 super-chunks of 32 bits, each two 16-bit
halves with one CSR table per half. Thresholds ``S[i]`` per super-chunk satisfy ``sum(S[i] + 1) >= radius + 1``, so
any hash within ``radius`` has some super-chunk ``i`` within ``S[i]``; probe radii ``H[2i], H[2i+1]`` satisfy
``H[2i] + H[2i+1] >= S[i] - 1``, so inside that super-chunk one half is within its probe radius. A threshold of -1
means "never". The plan minimises the number of probed buckets.
"""

from __future__ import annotations

import functools
from math import comb
from typing import NamedTuple

import numpy as np

NT = 16  # tables (16-bit halves)
NS = 8  # super-chunks (32 bits)
NKEYS = 1 << 16
NOFF = NKEYS + 1

# Cost model for choosing between probing the tables and scanning every hash (results are identical either way).
_BUCKET_COST = 40.0  # one probed bucket: an offsets read and a likely cache miss (~ns)
_ENTRY_COST = 1.0  # one table entry scanned (2 bytes, one popcount)
_LINEAR_COST = 3.0  # one hash compared in a linear scan (32 bytes, four popcounts)
_VERIFY_WEIGHT = 30.0  # one candidate verified against its full hash (a random read), in table entries

# _PROBES[h + 1]: how many 16-bit values lie within Hamming distance h of a key (h = -1 .. 16).
_PROBES = [0] + [sum(comb(16, k) for k in range(h + 1)) for h in range(17)]


class Plan(NamedTuple):
    radius: int
    S: np.ndarray  # int32 (8,): super-chunk thresholds
    H: np.ndarray  # int32 (16,): per-table probe radii
    probes: int  # buckets probed per query
    cost: float  # expected work, in bucket-entry units (see _chunk_cost)


@functools.cache
def _chunk_cost(s: int) -> tuple[float, int, int]:
    """Cheapest (cost, h0, h1) probe radii for one super-chunk with threshold s (h0 + h1 >= s - 1).

    Cost, in units of one bucket's entries: buckets probed, plus _VERIFY_WEIGHT per entry expected to pass the
    super-chunk filter on uniform data (each then costs a random read of the full hash)."""
    if s < 0:
        return 0.0, -1, -1
    best = None
    for h0 in range(-1, 17):
        h1 = max(-1, s - 1 - h0)
        if h1 > 16:
            continue
        cost = 0.0
        for t, h in ((0, h0), (1, h1)):
            lo = h0 + 1 if t else 0
            for dp in range(h + 1):
                lim = min(16, s - dp)
                if lim >= lo:
                    admitted = sum(comb(16, d) for d in range(max(lo, 0), lim + 1))
                    cost += comb(16, dp) * (1 + _VERIFY_WEIGHT * admitted / NKEYS)
        if best is None or cost < best[0]:
            best = (cost, h0, h1)
    assert best is not None
    return best


@functools.cache
def plan(radius: int) -> Plan:
    """The cheapest exact plan for ``radius`` (0..256): thresholds chosen by a small knapsack over super-chunks."""
    need = radius + 1  # sum(S[i] + 1) must reach this
    b_all = np.arange(need + 1)
    best = np.full(need + 1, np.inf)  # best[b]: min cost of the chunks so far reaching budget b (capped at need)
    best[0] = 0.0
    picks = []  # per chunk: (S chosen, previous budget) for each budget reached
    for _ in range(NS):
        new, pick_s, pick_b = np.full(need + 1, np.inf), np.zeros(need + 1, int), np.zeros(need + 1, int)
        for s in range(-1, 33):
            cand = best + _chunk_cost(s)[0]
            split = max(0, need - s - 1)  # budgets below split land below need: one target each
            tgt = b_all[:split] + s + 1
            better = cand[:split] < new[tgt]
            new[tgt[better]], pick_s[tgt[better]], pick_b[tgt[better]] = cand[:split][better], s, b_all[:split][better]
            if split <= need:
                j = split + int(np.argmin(cand[split:]))
                if cand[j] < new[need]:
                    new[need], pick_s[need], pick_b[need] = cand[j], s, j
        best = new
        picks.append((pick_s, pick_b))
    thresholds, b = [], need
    for pick_s, pick_b in reversed(picks):
        thresholds.append(int(pick_s[b]))
        b = int(pick_b[b])
    thresholds.sort()
    S = np.array(thresholds, dtype=np.int32)
    H = np.array([h for s in thresholds for h in _chunk_cost(s)[1:]], dtype=np.int32)
    probes = sum(_PROBES[h + 1] for h in H.tolist())
    return Plan(radius, S, H, probes, sum(_chunk_cost(s)[0] for s in thresholds))


def use_index(p: Plan, n: int) -> bool:
    """Whether probing the tables is expected to beat a linear scan of n hashes."""
    return p.probes * _BUCKET_COST + p.cost * _ENTRY_COST * n / NKEYS < _LINEAR_COST * n


# ---- popcount ----
_LUT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def popcount_lut(a: np.ndarray) -> np.ndarray:
    """Per-element popcount of an unsigned integer array via a byte table (for NumPy < 2.0)."""
    a = np.ascontiguousarray(a)
    return _LUT8[a.view(np.uint8).reshape(a.shape + (a.itemsize,))].sum(axis=-1, dtype=np.uint8)


popcount = getattr(np, "bitwise_count", popcount_lut)


# ---- masks ordered by popcount (same order as the C engine) ----
_ALL = np.arange(NKEYS, dtype=np.uint16)
_MASK_PC = popcount(_ALL).astype(np.int64)
_ORDER = np.argsort(_MASK_PC, kind="stable")
_MASKS = _ALL[_ORDER]
_MASKS_PC = _MASK_PC[_ORDER]


@functools.cache
def _probe_list(radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Flattened probes of a plan: (table, mask, lo, lim) with lo <= popcount(other half ^ query's) <= lim."""
    p = plan(radius)
    ts, masks, los, lims = [], [], [], []
    for t in range(NT):
        h = int(p.H[t])
        if h < 0:
            continue
        lo = max(0, int(p.H[t - 1]) + 1) if t & 1 else 0
        lim = int(p.S[t >> 1]) - _MASKS_PC[: _PROBES[min(h, 16) + 1]]
        ok = lim >= lo
        k = int(ok.sum())
        ts.append(np.full(k, t, dtype=np.int64))
        masks.append(_MASKS[: len(lim)][ok])
        los.append(np.full(k, lo, dtype=np.int64))
        lims.append(np.minimum(lim[ok], 16))
    cat = np.concatenate
    return cat(ts), cat(masks).astype(np.uint16), cat(los), cat(lims)


# ---- engine ----
name = "numpy"
_NONE = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int32))  # no hits: (query, id, distance)


def build(hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR tables for (n, 32) uint8 hashes: offsets (16, 65537) uint32, others (16, n) uint16, slots (16, n) uint32."""
    n = len(hashes)
    cols = np.ascontiguousarray(hashes.view("<u2").reshape(n, NT).T)  # cols[t]: every row's key in table t
    offsets = np.zeros((NT, NOFF), dtype=np.uint32)
    others = np.empty((NT, n), dtype=np.uint16)
    slots = np.empty((NT, n), dtype=np.uint32)
    for t in range(NT):
        order = np.argsort(cols[t], kind="stable")
        np.cumsum(np.bincount(cols[t], minlength=NKEYS), out=offsets[t, 1:])
        slots[t] = order
        np.take(cols[t ^ 1], order, out=others[t])
    return offsets, others, slots


def _linear(hashes, ids, alive, q64, radius, qidx):
    """(query, id, distance) arrays of every live row within radius, scanning rows in blocks."""
    out_q, out_id, out_d = [], [], []
    h64 = hashes.view(np.uint64).reshape(len(hashes), 4)
    block = max(1, (1 << 20) // max(1, len(q64)))
    for start in range(0, len(h64), block):
        blk = h64[start : start + block]
        d = popcount(blk[None, :, :] ^ q64[:, None, :]).sum(axis=2, dtype=np.int32)
        qi, row = np.nonzero((d <= radius) & (alive[start : start + block] != 0)[None, :])
        out_q.append(qidx[qi])
        out_id.append(ids[start + row])
        out_d.append(d[qi, row])
    if not out_q:
        return _NONE
    return np.concatenate(out_q), np.concatenate(out_id), np.concatenate(out_d)


def _indexed(queries, radius, main, qidx):
    """(query, id, distance) arrays of the main part's hits, found by probing the tables."""
    ids, hashes, alive, offsets, others, slots = main
    n = len(ids)
    p = plan(radius)
    pt, pmask, plo, plim = _probe_list(radius)
    qh = queries.view("<u2").reshape(len(queries), NT)
    keys = (qh[:, pt] ^ pmask).astype(np.int64)
    flat_off = offsets.reshape(-1)
    rows = pt * NOFF + keys
    begin = flat_off[rows].astype(np.int64).reshape(-1)
    lens = flat_off[rows + 1].astype(np.int64).reshape(-1) - begin
    total = int(lens.sum())
    if total == 0:
        return _NONE
    nprobe = len(pt)
    starts = begin + np.tile(pt * n, len(queries))
    excl = np.cumsum(lens) - lens
    pos = np.arange(total, dtype=np.int64) + np.repeat(starts - excl, lens)
    rid = np.repeat(np.arange(len(lens), dtype=np.int64), lens)
    qi, pi = np.divmod(rid, nprobe)
    qo = qh[qi, pt[pi] ^ 1]
    d_other = popcount(others.reshape(-1)[pos] ^ qo)
    keep = (d_other >= plo[pi]) & (d_other <= plim[pi])
    cand = slots.reshape(-1)[pos[keep]].astype(np.int64)
    cq = qi[keep]
    chunk = pt[pi[keep]] >> 1
    q32 = queries.view(np.uint32).reshape(len(queries), NS)
    dsc = popcount(hashes.view(np.uint32).reshape(n, NS)[cand] ^ q32[cq])
    canonical = np.argmax(dsc <= p.S, axis=1) == chunk
    dist = dsc.sum(axis=1, dtype=np.int32)
    ok = canonical & (dist <= radius) & (alive[cand] != 0)
    return qidx[cq[ok]], ids[cand[ok]], dist[ok]


def search(queries, radius, indexed, main, delta):
    """Search (m, 32) uint8 queries; main = (ids, hashes, alive, offsets, others, slots), delta = (ids, hashes,
    alive). Returns (counts int64 (m,), ids int64, distances int32) grouped by query, sorted by (distance, id)."""
    m = len(queries)
    q64 = queries.view(np.uint64).reshape(m, 4)
    parts = [_NONE]
    n = len(main[0])
    if n and indexed:
        per_query = max(1, plan(radius).probes * (n // NKEYS + 1))
        step = max(1, (1 << 22) // per_query)
        for start in range(0, m, step):
            qidx = np.arange(start, min(m, start + step), dtype=np.int64)
            parts.append(_indexed(queries[start : start + step], radius, main, qidx))
    elif n:
        parts.append(_linear(main[1], main[0], main[2], q64, radius, np.arange(m)))
    if len(delta[0]):
        parts.append(_linear(delta[1], delta[0], delta[2], q64, radius, np.arange(m)))
    q, i, d = (np.concatenate([p[k] for p in parts]) for k in range(3))
    order = np.lexsort((i, d, q))
    return np.bincount(q, minlength=m).astype(np.int64), i[order], d[order]
