"""Near-duplicate text lookup: an LSH index over ``text_minhash`` signatures.

Comparing a text's signature with every banked one costs O(bank size) per upload. Locality-sensitive hashing cuts
each 128-value signature into ``bands`` bands of ``rows`` values; two signatures become candidates when any band is
equal, and every candidate is then verified by its full signature similarity, so a result is never a false match.
The chance that a pair of Jaccard similarity *s* becomes a candidate is ``1 - (1 - s**rows) ** bands``.

Banding: the index takes the most rows per band (fewest candidates) that still give a candidate probability of at
least 99% at its threshold - at the default 0.5 that is 3 rows x 42 bands: 99.63% at 0.5, 99.996% at 0.6, 4.1%
at 0.1 and 0.5% at 0.05 (unrelated texts score 0.0-0.06; see bench/bench_text_minhash.py). A query with a lower
threshold than the banding allows for is answered by a full scan instead, so results are complete up to the 99%
bound at any threshold.

Storage (why not a dict per band, as datasketch's ``MinHashLSH`` keeps): one sorted array of the 64-bit hashes of
every entry's bands (the band number hashed in) and the row of each, searched with one ``np.searchsorted`` call.
With the signatures that is about 1.5 KB per text (a Python dict entry per band alone would be ~4 KB), so a
million texts fit in about 1.5 GB. Entries added since the last sort sit in a small unsorted tail scanned with
numpy; the table is re-sorted when the tail outgrows 1,024 + 1/8 of the sorted part (amortised O(log n) per added
entry). Removed entries are marked dead and dropped at the next re-sort.

Not thread-safe: callers serialise writes and do not query during a write.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bastion.errors import InvalidInput
from bastion.settings import get_settings
from bastion.signals.text import GOLDEN, NUM_PERM, decode_signature, decode_signatures, fmix64

TARGET_RECALL = 0.99
_MIN_TAIL = 1024


def candidate_probability(similarity: float, rows: int, bands: int) -> float:
    """Probability that a pair of this Jaccard similarity shares at least one band."""
    return 1.0 - (1.0 - similarity**rows) ** bands


def choose_banding(threshold: float, num_perm: int = NUM_PERM, target: float = TARGET_RECALL) -> tuple[int, int]:
    """(rows, bands): the most rows per band whose candidate probability at ``threshold`` is at least ``target``."""
    best = (1, num_perm)
    for rows in range(1, num_perm + 1):
        if candidate_probability(threshold, rows, num_perm // rows) >= target:
            best = (rows, num_perm // rows)
    return best


def _check_threshold(threshold: float) -> float:
    if not isinstance(threshold, int | float) or not 0.0 <= float(threshold) <= 1.0:
        raise InvalidInput(f"a similarity threshold is between 0 and 1, got {threshold!r}", code="invalid_threshold")
    return float(threshold)


class MinHashIndex:
    """Text MinHash signatures by integer id; ``query`` gives the ids at or above a similarity, best first."""

    def __init__(self, threshold: float | None = None) -> None:
        if threshold is None:
            threshold = get_settings().text_near_duplicate_threshold
        self.threshold = _check_threshold(threshold)
        if self.threshold == 0:
            raise InvalidInput("the index threshold must be above 0", code="invalid_threshold")
        self.rows, self.bands = choose_banding(self.threshold)
        self._sigs = np.empty((0, NUM_PERM), np.uint32)
        self._keys = np.empty((0, self.bands), np.uint64)
        self._ids = np.empty(0, np.int64)
        self._alive = np.empty(0, bool)
        self._size = 0  # rows in use, dead ones included
        self._row_of: dict[int, int] = {}
        self._sorted_keys = np.empty(0, np.uint64)  # every (row, band) hash, sorted
        self._sorted_rows = np.empty(0, np.int32)  # the row of each
        self._indexed = 0  # rows [0, _indexed) are in the sorted tables

    def __len__(self) -> int:
        return len(self._row_of)

    def __contains__(self, item: object) -> bool:
        return item in self._row_of

    # -- writes ---------------------------------------------------------------------------------------------------
    def add(self, ids: Sequence[int], values: Sequence[str]) -> None:
        """Add signatures (``text_minhash`` values) under ids; an id already present is replaced.

        Every value is validated first: one bad value (InvalidSignal) or a repeated id (InvalidInput) changes nothing.
        """
        ids, values = list(ids), list(values)
        if len(ids) != len(values):
            raise InvalidInput(f"{len(ids)} ids for {len(values)} values", code="length_mismatch")
        if not ids:
            return
        if not all(isinstance(i, int | np.integer) and not isinstance(i, bool) for i in ids):
            raise InvalidInput("ids must be integers", code="invalid_id")
        if len(set(ids)) != len(ids):
            raise InvalidInput("the same id appears twice in one add", code="duplicate_id")
        sigs = decode_signatures(values)
        keys = self._band_keys(sigs)
        self.remove([i for i in ids if i in self._row_of])
        start, end = self._size, self._size + len(ids)
        self._reserve(end)
        self._sigs[start:end] = sigs
        self._keys[start:end] = keys
        self._ids[start:end] = ids
        self._alive[start:end] = True
        self._row_of.update(zip((int(i) for i in ids), range(start, end), strict=True))
        self._size = end
        if end - self._indexed > _MIN_TAIL + self._indexed // 8:
            self._rebuild()

    def remove(self, ids: Sequence[int]) -> int:
        """Remove ids; returns how many were present."""
        removed = 0
        for i in ids:
            row = self._row_of.pop(int(i), None)
            if row is not None:
                self._alive[row] = False
                removed += 1
        if removed and self._size - len(self._row_of) > max(_MIN_TAIL, len(self._row_of)):
            self._rebuild()
        return removed

    # -- reads ----------------------------------------------------------------------------------------------------
    def query(self, value: str, threshold: float | None = None) -> list[tuple[int, float]]:
        """(id, estimated Jaccard similarity) of stored signatures at or above ``threshold`` (default: the index's),
        most similar first, ties by id."""
        t = self.threshold if threshold is None else _check_threshold(threshold)
        sig = decode_signature(value)
        if not self._row_of:
            return []
        if candidate_probability(t, self.rows, self.bands) < TARGET_RECALL:
            rows = np.flatnonzero(self._alive[: self._size])  # banding too coarse for this threshold: scan all
        else:
            rows = self._candidates(self._band_keys(sig[None, :])[0])
        if not rows.size:
            return []
        sims = np.count_nonzero(self._sigs[rows] == sig, axis=1) / NUM_PERM
        keep = sims >= t - 1e-9
        rows, sims = rows[keep], sims[keep]
        ids = self._ids[rows]
        order = np.lexsort((ids, -sims))
        return [(int(ids[k]), float(sims[k])) for k in order]

    def _candidates(self, qkeys: np.ndarray) -> np.ndarray:
        parts = []
        if self._indexed:
            los = np.searchsorted(self._sorted_keys, qkeys, "left")
            his = np.searchsorted(self._sorted_keys, qkeys, "right")
            parts += [self._sorted_rows[lo:hi] for lo, hi in zip(los.tolist(), his.tolist(), strict=True) if hi > lo]
        if self._size > self._indexed:
            tail = (self._keys[self._indexed : self._size] == qkeys).any(axis=1)
            parts.append(np.flatnonzero(tail) + self._indexed)
        if not parts:
            return np.empty(0, np.int64)
        rows = np.unique(np.concatenate(parts))
        return rows[self._alive[rows]]

    # -- internals ------------------------------------------------------------------------------------------------
    def _band_keys(self, sigs: np.ndarray) -> np.ndarray:
        """(n, bands) 64-bit hashes of each signature's bands (the band number is hashed in: one table for all)."""
        n = sigs.shape[0]
        x = sigs[:, : self.bands * self.rows].astype(np.uint64).reshape(n, self.bands, self.rows)
        h = np.repeat(np.arange(1, self.bands + 1, dtype=np.uint64)[None, :], n, axis=0)
        for j in range(self.rows):
            h = fmix64(h * GOLDEN + x[:, :, j])
        return h

    def _reserve(self, n: int) -> None:
        if n <= len(self._ids):
            return
        cap = max(n, 2 * len(self._ids), 64)
        for name, fill in (("_sigs", 0), ("_keys", 0), ("_ids", 0), ("_alive", False)):
            old = getattr(self, name)
            new = np.full((cap, *old.shape[1:]), fill, old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)

    def _rebuild(self) -> None:
        """Drop dead rows and sort every band's hashes (the whole index becomes the sorted part)."""
        live = np.flatnonzero(self._alive[: self._size])
        n = len(live)
        self._sigs[:n] = self._sigs[live]
        self._keys[:n] = self._keys[live]
        self._ids[:n] = self._ids[live]
        self._alive[:n] = True
        self._alive[n:] = False
        self._size = self._indexed = n
        self._row_of = dict(zip(self._ids[:n].tolist(), range(n), strict=True))
        flat = self._keys[:n].ravel()
        order = np.argsort(flat, kind="stable")
        self._sorted_keys = flat[order]
        self._sorted_rows = (order // self.bands).astype(np.int32)


__all__ = ["MinHashIndex", "choose_banding", "candidate_probability", "TARGET_RECALL"]
