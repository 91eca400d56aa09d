"""Bastion's exact PDQ radius index: every bank hash within the radius, none beyond, fast at tens of millions.

Why our own: matching uploads against banks of PDQ hashes is Bastion's hot path. FAISS ``IndexBinaryMultiHash``
(what HMA uses) is exact at radius 31 but measured here at ~60 queries/s/core and 3.4 GB for 10M hashes. This index
uses a generalised pigeonhole over 8 super-chunks of 32 bits, each split into two 16-bit halves with one CSR table per
half; a cheap filter on the whole super-chunk leaves few candidates to verify (design and measurements:
docs/pdq_index.md, bench/bench_pdq_index.py).

State: a *main* part (ids sorted ascending, hashes, a live flag per row, the tables) plus a small *delta* of recent
additions scanned linearly. Removing or replacing clears a live flag; the delta is folded into main (a rebuild) once
it grows past a size limit, and main is rebuilt once a quarter of it is dead, so add/remove cost is amortised.

Threads: queries read an immutable snapshot reference and run with the GIL released (C engine); mutations are
serialised by a lock, write only where no published snapshot reads or only flip single live bytes, and publish a
new snapshot at the end. A query concurrent with a mutation sees the index before or after it (a replaced id may be
briefly absent), never torn data.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from bastion.errors import InvalidInput, InvalidSignal
from bastion.matching import _pdq_numpy, _pdq_store

try:
    from bastion.matching import _pdqindex as _c
except ImportError:  # built without a C compiler: the NumPy engine gives the same results, slower
    _c = None

HASH_BYTES = 32
DEFAULT_RADIUS = 31
MAX_RADIUS = 256
STRATEGIES = ("auto", "index", "linear")


class _CEngine:
    name = "c"

    @staticmethod
    def build(hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = len(hashes)
        offsets = np.empty((_pdq_numpy.NT, _pdq_numpy.NOFF), np.uint32)
        others = np.empty((_pdq_numpy.NT, n), np.uint16)
        slots = np.empty((_pdq_numpy.NT, n), np.uint32)
        _c.build(hashes, offsets, others, slots)
        return offsets, others, slots

    @staticmethod
    def search(queries, radius, indexed, main, delta):
        ids, hashes, alive, offsets, others, slots = main
        p = _pdq_numpy.plan(radius)
        out = _c.search(queries, radius, p.S, p.H, indexed, hashes, ids, alive, offsets, others, slots,
                        delta[1], delta[0], delta[2])  # fmt: skip
        return np.frombuffer(out[0], np.int64), np.frombuffer(out[1], np.int64), np.frombuffer(out[2], np.int32)


ENGINES: dict[str, Any] = {"numpy": _pdq_numpy}
if _c is not None:
    ENGINES["c"] = _CEngine


@dataclass(eq=False)
class _Main:
    """The compacted part: rows sorted by id; ``alive`` is cleared in place on remove."""

    ids: np.ndarray
    hashes: np.ndarray
    alive: np.ndarray
    offsets: np.ndarray
    others: np.ndarray
    slots: np.ndarray
    dead: int = 0

    @classmethod
    def build(cls, engine: Any, ids: np.ndarray, hashes: np.ndarray) -> _Main:
        hashes = np.ascontiguousarray(hashes, dtype=np.uint8)
        if len(ids) >= 2**32:
            raise InvalidInput("a PDQ index holds at most 2**32 - 1 hashes")
        offsets, others, slots = engine.build(hashes)
        return cls(np.ascontiguousarray(ids, np.int64), hashes, np.ones(len(ids), np.uint8), offsets, others, slots)

    def arrays(self) -> tuple[np.ndarray, ...]:
        return self.ids, self.hashes, self.alive, self.offsets, self.others, self.slots


@dataclass(eq=False)
class _Delta:
    """Recent additions, scanned linearly; rows beyond the published count are invisible to queries."""

    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    hashes: np.ndarray = field(default_factory=lambda: np.zeros((0, HASH_BYTES), np.uint8))
    alive: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))
    pos: dict[int, int] = field(default_factory=dict)  # live id -> row


class _Snap(NamedTuple):
    main: _Main
    delta: _Delta
    dn: int  # rows of the delta visible to queries


def _as_ids(ids: Any) -> np.ndarray:
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise InvalidInput(f"ids must be a 1-D array, got shape {arr.shape}")
    if arr.size == 0:
        return np.zeros(0, np.int64)
    if arr.dtype.kind not in "iu" or (arr.dtype.kind == "u" and arr.max() > np.iinfo(np.int64).max):
        raise InvalidInput(f"ids must be int64 values, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _as_hashes(hashes: Any, what: str = "hashes") -> np.ndarray:
    arr = np.asarray(hashes)
    if arr.ndim != 2 or arr.shape[1] != HASH_BYTES or (arr.dtype != np.uint8 and arr.size):
        raise InvalidSignal(f"{what} must be a uint8 array of shape (n, 32), got {arr.dtype} {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.uint8)


def _as_query(hash32: Any) -> np.ndarray:
    if isinstance(hash32, str):
        return hashes_from_hex([hash32])
    if isinstance(hash32, bytes | bytearray | memoryview):
        if len(hash32) != HASH_BYTES:
            raise InvalidSignal(f"a PDQ hash is 32 bytes, got {len(hash32)}")
        return np.frombuffer(bytes(hash32), np.uint8).reshape(1, HASH_BYTES)
    arr = np.asarray(hash32)
    if arr.shape != (HASH_BYTES,) or arr.dtype != np.uint8:
        raise InvalidSignal(f"a PDQ hash is a uint8 array of shape (32,), got {arr.dtype} {arr.shape}")
    return np.ascontiguousarray(arr).reshape(1, HASH_BYTES)


def _own(arr: np.ndarray, given: Any) -> np.ndarray:
    """``arr`` if it is a fresh array, else a copy: the index must not keep memory the caller may reuse."""
    return arr if arr is not given and arr.base is None else arr.copy()


def _increasing(ids: np.ndarray) -> bool:
    return len(ids) < 2 or bool(np.all(ids[1:] > ids[:-1]))


def _check_radius(radius: Any) -> int:
    if isinstance(radius, bool) or not isinstance(radius, int | np.integer) or not 0 <= radius <= MAX_RADIUS:
        raise InvalidInput(f"radius must be an integer from 0 to {MAX_RADIUS}, got {radius!r}")
    return int(radius)


class PDQIndex:
    """Exact Hamming-radius search over 256-bit PDQ hashes keyed by caller-chosen int64 ids."""

    #: the delta is folded into main when it holds more than clamp(len(main) // DELTA_FRACTION, MIN, MAX) rows
    DELTA_MIN, DELTA_MAX, DELTA_FRACTION = 1024, 16384, 512
    #: main is rebuilt when more than max(DEAD_MIN, len(main) // DEAD_FRACTION) of its rows are removed
    DEAD_MIN, DEAD_FRACTION = 1024, 4

    def __init__(self, *, engine: str | None = None, strategy: str = "auto") -> None:
        """``engine``: "c" or "numpy" (default: C when built). ``strategy``: "auto", or force "index"/"linear"
        (same results; for tests and benchmarks)."""
        name = engine or ("c" if "c" in ENGINES else "numpy")
        if name not in ENGINES:
            raise InvalidInput(f"PDQ index engine {name!r} is not available (have: {', '.join(ENGINES)})")
        if strategy not in STRATEGIES:
            raise InvalidInput(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        self._engine = ENGINES[name]
        self._strategy = strategy
        self._lock = threading.Lock()
        self._snap = _Snap(self._new_main(np.zeros(0, np.int64), np.zeros((0, HASH_BYTES), np.uint8)), _Delta(), 0)
        self._live = 0
        self._delta_live = 0

    @property
    def engine(self) -> str:
        return self._engine.name

    def __len__(self) -> int:
        return self._live

    def __repr__(self) -> str:
        return f"<PDQIndex {self._live} hashes, engine={self.engine}>"

    def _new_main(self, ids: np.ndarray, hashes: np.ndarray) -> _Main:
        return _Main.build(self._engine, ids, hashes)

    def _delta_limit(self, n_main: int) -> int:
        return min(self.DELTA_MAX, max(self.DELTA_MIN, n_main // self.DELTA_FRACTION))

    # -- mutation ---------------------------------------------------------------------------------------------------
    def add(self, ids: np.ndarray, hashes: np.ndarray) -> None:
        """Add or replace entries: ``ids`` int64 (n,), ``hashes`` uint8 (n, 32). A repeated id keeps its last hash."""
        given = ids, hashes
        ids, hashes = _as_ids(ids), _as_hashes(hashes)
        if len(ids) != len(hashes):
            raise InvalidInput(f"{len(ids)} ids but {len(hashes)} hashes")
        if not len(ids):
            return
        if not _increasing(ids):
            uniq, first_from_end = np.unique(ids[::-1], return_index=True)
            if len(uniq) != len(ids):  # a repeated id: keep its last row
                keep = np.sort(len(ids) - 1 - first_from_end)
                ids, hashes = ids[keep], hashes[keep]
        with self._lock:
            if self._delta_live + len(ids) > self._delta_limit(len(self._snap.main.ids)):
                self._rebuild(_own(ids, given[0]), _own(hashes, given[1]))
                return
            self._tombstone(ids)
            main, d, dn = self._snap
            k = len(ids)
            if dn + k > len(d.ids):  # grow into new arrays; published snapshots keep the old ones
                cap = max(64, 2 * (dn + k))
                grown = _Delta(np.zeros(cap, np.int64), np.zeros((cap, HASH_BYTES), np.uint8), np.zeros(cap, np.uint8))
                grown.ids[:dn], grown.hashes[:dn], grown.alive[:dn] = d.ids[:dn], d.hashes[:dn], d.alive[:dn]
                grown.pos = d.pos
                d = grown
            d.ids[dn : dn + k], d.hashes[dn : dn + k], d.alive[dn : dn + k] = ids, hashes, 1
            d.pos.update(zip(ids.tolist(), range(dn, dn + k), strict=True))
            self._snap = _Snap(main, d, dn + k)
            self._live += k
            self._delta_live += k

    def remove(self, ids: np.ndarray) -> int:
        """Remove entries by id; unknown ids are ignored. Returns how many were present."""
        ids = np.unique(_as_ids(ids))
        with self._lock:
            removed = self._tombstone(ids)
            main = self._snap.main
            if main.dead > max(self.DEAD_MIN, len(main.ids) // self.DEAD_FRACTION):
                self._rebuild()
            return removed

    def compact(self) -> None:
        """Fold the delta into main and drop removed rows now (otherwise done automatically when worthwhile)."""
        with self._lock:
            if self._snap.dn or self._snap.main.dead:
                self._rebuild()

    def _tombstone(self, ids: np.ndarray) -> int:
        """Mark live entries with these (unique) ids removed; returns how many there were. Caller holds the lock."""
        main, d, dn = self._snap
        removed = 0
        if len(main.ids) and len(ids):
            pos = np.minimum(np.searchsorted(main.ids, ids), len(main.ids) - 1)
            pos = pos[(main.ids[pos] == ids) & (main.alive[pos] != 0)]
            main.alive[pos] = 0
            main.dead += len(pos)
            removed += len(pos)
        if d.pos and len(ids):
            for i in ids[np.isin(ids, d.ids[:dn])].tolist():
                row = d.pos.pop(i, None)
                if row is not None:
                    d.alive[row] = 0
                    self._delta_live -= 1
                    removed += 1
        self._live -= removed
        return removed

    def _live_arrays(self, extra_ids: np.ndarray | None = None, extra_hashes: np.ndarray | None = None):
        """All live (ids ascending, hashes), with ``extra`` (unique ids) replacing entries of the same id."""
        main, d, dn = self._snap
        ids, hashes = main.ids, main.hashes
        if main.dead:
            keep = main.alive.view(bool)
            ids, hashes = ids[keep], hashes[keep]
        live = d.alive[:dn].view(bool)
        side_ids, side_hashes = d.ids[:dn][live], d.hashes[:dn][live]
        if extra_ids is not None and len(extra_ids) and not len(side_ids):
            side_ids, side_hashes = extra_ids, extra_hashes
        elif extra_ids is not None and len(extra_ids):
            stay = ~np.isin(side_ids, extra_ids)
            side_ids = np.concatenate([side_ids[stay], extra_ids])
            side_hashes = np.concatenate([side_hashes[stay], extra_hashes])
        if extra_ids is not None and len(extra_ids) and len(ids):
            pos = np.minimum(np.searchsorted(ids, extra_ids), len(ids) - 1)
            pos = pos[ids[pos] == extra_ids]
            if len(pos):
                keep = np.ones(len(ids), bool)
                keep[pos] = False
                ids, hashes = ids[keep], hashes[keep]
        if not len(side_ids):
            return ids, hashes
        if not _increasing(side_ids):
            order = np.argsort(side_ids, kind="stable")
            side_ids, side_hashes = side_ids[order], side_hashes[order]
        if not len(ids):
            return side_ids, side_hashes
        at = np.searchsorted(ids, side_ids) + np.arange(len(side_ids))
        out_ids = np.empty(len(ids) + len(side_ids), np.int64)
        out_hashes = np.empty((len(out_ids), HASH_BYTES), np.uint8)
        from_main = np.ones(len(out_ids), bool)
        from_main[at] = False
        out_ids[from_main], out_hashes[from_main] = ids, hashes
        out_ids[at], out_hashes[at] = side_ids, side_hashes
        return out_ids, out_hashes

    def _rebuild(self, extra_ids: np.ndarray | None = None, extra_hashes: np.ndarray | None = None) -> None:
        ids, hashes = self._live_arrays(extra_ids, extra_hashes)
        self._install(ids, hashes)

    def _install(self, ids: np.ndarray, hashes: np.ndarray) -> None:
        self._snap = _Snap(self._new_main(ids, hashes), _Delta(), 0)
        self._live = len(ids)
        self._delta_live = 0

    # -- queries ----------------------------------------------------------------------------------------------------
    def query(self, hash32: bytes | np.ndarray | str, radius: int = DEFAULT_RADIUS) -> tuple[np.ndarray, np.ndarray]:
        """Ids (int64) and distances (int32) of every entry within ``radius``, sorted by distance then id."""
        return self._search(_as_query(hash32), radius)[0]

    def query_many(self, hashes: np.ndarray, radius: int = DEFAULT_RADIUS) -> list[tuple[np.ndarray, np.ndarray]]:
        """:meth:`query` for each row of a (m, 32) uint8 array, in one call (the GIL is released throughout)."""
        return self._search(_as_hashes(hashes, "query hashes"), radius)

    def _search(self, queries: np.ndarray, radius: int) -> list[tuple[np.ndarray, np.ndarray]]:
        radius = _check_radius(radius)
        main, d, dn = self._snap
        if self._strategy == "auto":
            indexed = _pdq_numpy.use_index(_pdq_numpy.plan(radius), len(main.ids))
        else:
            indexed = self._strategy == "index"
        delta = (d.ids[:dn], d.hashes[:dn], d.alive[:dn])
        counts, ids, dists = self._engine.search(queries, radius, indexed, main.arrays(), delta)
        if len(counts) == 1:
            return [(ids, dists)]
        ends = np.cumsum(counts).tolist()
        return [(ids[a:b], dists[a:b]) for a, b in zip([0, *ends], ends, strict=False)]

    @property
    def memory_bytes(self) -> int:
        """Bytes held by the index's arrays (computed, not measured), plus an estimate for the delta's id map."""
        main, d, _ = self._snap
        arrays = (*main.arrays(), d.ids, d.hashes, d.alive)
        return sum(a.nbytes for a in arrays) + sys.getsizeof(d.pos) + 64 * len(d.pos)

    # -- persistence ------------------------------------------------------------------------------------------------
    def save(self, directory: Path, meta: dict | None = None) -> None:
        """Write the live entries and ``meta`` (JSON data) to ``directory`` atomically; see _pdq_store."""
        with self._lock:
            ids, hashes = self._live_arrays()
            _pdq_store.save(Path(directory), ids, hashes, meta)

    @classmethod
    def load(cls, directory: Path, *, engine: str | None = None) -> tuple[PDQIndex, dict]:
        """Read a saved index; raises :class:`~bastion.errors.IndexCorrupt` if it is missing or damaged."""
        ids, hashes, meta = _pdq_store.load(Path(directory))
        index = cls(engine=engine)
        with index._lock:
            index._install(ids, hashes)
        return index, meta


def hashes_from_hex(values: Sequence[str]) -> np.ndarray:
    """(n, 32) uint8 array from PDQ hex strings (64 hex digits each); raises ``InvalidSignal`` naming a bad one."""
    raw = []
    for i, value in enumerate(values):
        try:
            decoded = bytes.fromhex(value) if isinstance(value, str) and len(value) == 64 else b""
        except ValueError:
            decoded = b""
        if len(decoded) != HASH_BYTES:  # 64 characters decode to 32 bytes only when all are hex digits
            shown = value[:80] if isinstance(value, str) else type(value).__name__
            raise InvalidSignal(f"PDQ hash #{i} is not 64 hex digits: {shown!r}", index=i)
        raw.append(decoded)
    return np.frombuffer(bytearray().join(raw), np.uint8).reshape(len(raw), HASH_BYTES)


def hash_to_hex(h: np.ndarray | bytes) -> str:
    """The 64-digit lowercase hex form of one hash (uint8 array of shape (32,) or 32 bytes)."""
    return _as_query(h).tobytes().hex()
