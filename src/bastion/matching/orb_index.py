"""The ORB keypoint index: which bank pictures share enough keypoints with a submission, geometrically verified.

Every bank picture's keypoint descriptors (256 bits each, like a PDQ hash) go into one
:class:`~bastion.matching.pdq_index.PDQIndex` under the row id ``(signal_id << 10) | keypoint``; positions stay
beside it per signal. A query looks up each of the submission's descriptors within the radius, keeps for every
(submission keypoint, bank picture) the nearest bank keypoint, and verifies the bank pictures that gathered at least
``min_inliers`` candidate pairs with RANSAC (``bastion.signals.orb.verify_pairs``). Chance descriptor neighbours are
common (ORB bits are far from independent); chance neighbours that also agree on one rotation, scale and shift are
not, which is why verification, not the radius, decides.
"""

from __future__ import annotations

import numpy as np

from bastion.matching.pdq_index import PDQIndex
from bastion.signals.orb import Keypoints, Verified, verify_pairs

KEYPOINT_BITS = 10
#: bank pictures verified per query at most, those with the most candidate pairs first
MAX_CANDIDATES = 64


class ORBIndex:
    """Bank pictures' ORB keypoints keyed by signal id."""

    def __init__(self) -> None:
        self.descriptors = PDQIndex()
        self.keypoints: dict[int, Keypoints] = {}

    def __len__(self) -> int:
        return len(self.keypoints)

    def add(self, signal_id: int, kp: Keypoints) -> None:
        if not len(kp):
            return
        self.remove([signal_id])
        rows = (np.int64(signal_id) << KEYPOINT_BITS) | np.arange(len(kp), dtype=np.int64)
        self.descriptors.add(rows, kp.descriptors)
        # verification needs positions only; the descriptors live in the index
        self.keypoints[signal_id] = Keypoints(kp.width, kp.height, kp.points, kp.descriptors[:0])

    def remove(self, signal_ids) -> int:
        removed = 0
        for sid in signal_ids:
            kp = self.keypoints.pop(int(sid), None)
            if kp is not None:
                self.descriptors.remove((np.int64(sid) << KEYPOINT_BITS) | np.arange(len(kp), dtype=np.int64))
                removed += 1
        return removed

    def query(self, query: Keypoints, radius: int, min_inliers: int) -> list[tuple[int, Verified]]:
        """Bank signals whose pictures agree with ``query`` on at least ``min_inliers`` verified keypoints."""
        if not len(query) or not self.keypoints:
            return []
        results = self.descriptors.query_many(query.descriptors, radius)
        counts = np.array([len(ids) for ids, _ in results])
        if not counts.sum():
            return []
        q = np.repeat(np.arange(len(query)), counts)
        rows = np.concatenate([ids for ids, _ in results])
        dists = np.concatenate([d for _, d in results])
        sids = rows >> KEYPOINT_BITS
        # the nearest bank keypoint for each (query keypoint, bank picture)
        order = np.lexsort((dists, q, sids))
        q, rows, sids = q[order], rows[order], sids[order]
        first = np.r_[True, (sids[1:] != sids[:-1]) | (q[1:] != q[:-1])]
        q, rows, sids = q[first], rows[first], sids[first]
        uniq, starts, per_sid = np.unique(sids, return_index=True, return_counts=True)
        wanted = np.flatnonzero(per_sid >= min_inliers)
        wanted = wanted[np.argsort(-per_sid[wanted], kind="stable")][:MAX_CANDIDATES]
        out: list[tuple[int, Verified]] = []
        for i in wanted.tolist():
            sid = int(uniq[i])
            bank = self.keypoints.get(sid)
            if bank is None:
                continue
            sl = slice(starts[i], starts[i] + per_sid[i])
            verified = verify_pairs(query, bank, q[sl], rows[sl] & ((1 << KEYPOINT_BITS) - 1))
            if verified is not None and verified.inliers >= min_inliers:
                out.append((sid, verified))
        return out

    @property
    def memory_bytes(self) -> int:
        """The descriptor index's arrays plus the keypoint positions (computed, not measured)."""
        positions = sum(kp.points.nbytes + 200 for kp in self.keypoints.values())
        return self.descriptors.memory_bytes + positions
