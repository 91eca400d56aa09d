"""The matcher: checks the signals of one piece of content against every enabled bank.

Exact signal types (md5, sha256, url, text...) are looked up in the database by ``(signal_type, lookup_key)``;
similarity types use in-memory indexes: PDQ in :class:`~bastion.matching.pdq_index.PDQIndex` (saved to disk, so a
restart does not re-read the database), vPDQ frames in a second PDQ index, ORB keypoints in an
:class:`~bastion.matching.orb_index.ORBIndex` (verified geometrically), near-duplicate text in a
:class:`~bastion.matching.text_index.MinHashIndex`, and any other similarity type (e.g. TMK) in a linear list.

Freshness: indexes follow the bank tables without full reloads. New signals are found by id (``bank_signals`` ids
only grow); what id order cannot show (entries and banks disabled, enabled or deleted) comes from the
``bank_changes`` feed. Whatever an index returns is re-checked against the database before it is reported, so a
disabled entry never matches even before the feed has been applied.

Allow-list banks: when any allow-list entry matches the content, every block match is moved to ``suppressed``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import and_, func, or_, select

from bastion import signals as signal_registry
from bastion.errors import BastionError
from bastion.matching.pdq_index import PDQIndex, hashes_from_hex
from bastion.settings import Settings, get_settings
from bastion.signals.base import Signal
from bastion.storage.db import Database
from bastion.storage.models import Bank, BankChange, BankEntry, BankSignal, lookup_key

log = logging.getLogger(__name__)

SNAPSHOT_VERSION = 1
VPDQ_FRAME_BITS = 20  # frame index bits in a vPDQ frame id: (signal_id << 20) | frame
INDEXED_TYPES = ("pdq", "vpdq", "orb", "text_minhash")
LISTED_LAST = frozenset({"orb"})


@dataclass
class Match:
    """One bank entry matched by one signal of the content."""

    bank: str
    bank_kind: str
    entry_id: int
    signal_type: str
    distance: float
    labels: dict[str, Any]
    source: str
    signal_id: int
    detail: dict[str, Any] = field(default_factory=dict)
    bank_id: int = 0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "bank": self.bank,
            "entry_id": self.entry_id,
            "signal_type": self.signal_type,
            "distance": self.distance,
            "labels": self.labels,
            "source": self.source,
        }
        out.update(self.detail)
        return out


@dataclass
class MatchResult:
    matches: list[Match] = field(default_factory=list)
    suppressed: list[Match] = field(default_factory=list)  # block matches overruled by an allow-list match
    allowed_by: list[Match] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"matches": [m.to_dict() for m in self.matches]}
        if self.suppressed:
            out["suppressed"] = [m.to_dict() for m in self.suppressed]
            out["allowed_by"] = [m.to_dict() for m in self.allowed_by]
        return out


@dataclass
class _Hit:
    signal_id: int
    distance: float
    detail: dict[str, Any] = field(default_factory=dict)


class _OwnedIds:
    """Which entry and bank each indexed signal id belongs to, as growable NumPy arrays (vectorised deletes)."""

    def __init__(self) -> None:
        self.ids = np.empty(0, np.int64)
        self.entries = np.empty(0, np.int64)
        self.banks = np.empty(0, np.int64)
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, ids: np.ndarray, entries: np.ndarray, banks: np.ndarray) -> None:
        self._pending.append((ids, entries, banks))

    def _flush(self) -> None:
        if self._pending:
            self.ids = np.concatenate([self.ids, *(p[0] for p in self._pending)])
            self.entries = np.concatenate([self.entries, *(p[1] for p in self._pending)])
            self.banks = np.concatenate([self.banks, *(p[2] for p in self._pending)])
            self._pending.clear()

    def take(self, *, entry_id: int | None = None, bank_id: int | None = None) -> np.ndarray:
        """Forget and return the ids owned by an entry or a bank."""
        self._flush()
        mask = self.entries == entry_id if entry_id is not None else self.banks == bank_id
        taken = self.ids[mask]
        if taken.size:
            keep = ~mask
            self.ids, self.entries, self.banks = self.ids[keep], self.entries[keep], self.banks[keep]
        return taken

    def arrays(self) -> dict[str, np.ndarray]:
        self._flush()
        return {"ids": self.ids, "entries": self.entries, "banks": self.banks}

    @classmethod
    def from_arrays(cls, arrays: Any) -> _OwnedIds:
        owned = cls()
        owned.ids, owned.entries, owned.banks = (np.asarray(arrays[k], np.int64) for k in ("ids", "entries", "banks"))
        return owned


# The statement every hit is resolved through (built once: building it per query cost more than running it).
_RESOLVE_BASE = (
    select(
        BankSignal.id,
        BankSignal.signal_type,
        BankSignal.entry_id,
        Bank.name,
        Bank.kind,
        BankEntry.labels,
        BankEntry.source,
        Bank.id.label("bank_id"),
    )
    .join(BankEntry, BankEntry.id == BankSignal.entry_id)
    .join(Bank, Bank.id == BankSignal.bank_id)
    .where(BankEntry.enabled.is_(True), Bank.enabled.is_(True))
)


class Matcher:
    """Matches signals against the banks of one database. Call :meth:`refresh` to pick up bank changes."""

    def __init__(self, db: Database, settings: Settings | None = None, *, snapshot_dir: Path | None = None) -> None:
        self.db = db
        self.settings = settings or get_settings()
        self.snapshot_dir = snapshot_dir
        self._clear()
        self._dirty = False
        self._loaded_snapshot = self._load_snapshot() if snapshot_dir else False

    def _clear(self) -> None:
        self.pdq = PDQIndex()
        self._pdq_owned = _OwnedIds()
        self.vpdq_frames = PDQIndex()
        self._vpdq_owned = _OwnedIds()
        self._vpdq_videos: dict[int, list[Any]] = {}  # signal id -> parsed frames
        self._orb: Any = None  # ORBIndex, created with the first ORB signal
        self._orb_owned = _OwnedIds()
        self._minhash: Any = None
        self._minhash_owned = _OwnedIds()
        self._linear: dict[str, dict[int, Any]] = defaultdict(dict)  # other similarity types: id -> prepared value
        self._linear_owner: dict[int, tuple[int, int]] = {}
        self.last_signal_id = 0
        self.last_change_seq = 0

    # -- keeping fresh --------------------------------------------------------------------------------------------
    def refresh(self) -> int:
        """Apply bank changes since the last refresh; returns how many signals were added or removed."""
        changed = 0
        with self.db.session() as s:
            max_seq = s.scalar(select(func.max(BankChange.seq))) or 0
            max_id = s.scalar(select(func.max(BankSignal.id))) or 0
            if max_id < self.last_signal_id or max_seq < self.last_change_seq:
                log.warning("bank tables are behind the index snapshot (a new database?): rebuilding")
                self._clear()
            if max_seq > self.last_change_seq:
                changes = s.scalars(
                    select(BankChange).where(BankChange.seq > self.last_change_seq).order_by(BankChange.seq)
                ).all()
                for change in changes:
                    changed += self._apply_change(s, change)
                self.last_change_seq = max_seq
            if max_id > self.last_signal_id:
                changed += self._load_signals(s, BankSignal.id > self.last_signal_id, BankSignal.id <= max_id)
                self.last_signal_id = max_id
        if changed:
            self._dirty = True
        return changed

    def _apply_change(self, s: Any, change: BankChange) -> int:
        kind = change.kind
        if kind in ("entry_disabled", "entry_deleted"):
            return self._forget(entry_id=change.entry_id)
        if kind in ("bank_disabled", "bank_deleted"):
            return self._forget(bank_id=change.bank_id)
        if kind == "entry_enabled":
            self._forget(entry_id=change.entry_id)
            return self._load_signals(s, BankSignal.entry_id == change.entry_id, BankSignal.id <= self.last_signal_id)
        if kind == "bank_enabled":
            self._forget(bank_id=change.bank_id)
            return self._load_signals(s, BankSignal.bank_id == change.bank_id, BankSignal.id <= self.last_signal_id)
        log.warning("unknown bank change kind %r ignored", kind)
        return 0

    def _forget(self, *, entry_id: int | None = None, bank_id: int | None = None) -> int:
        removed = self.pdq.remove(self._pdq_owned.take(entry_id=entry_id, bank_id=bank_id))
        frame_ids = self._vpdq_owned.take(entry_id=entry_id, bank_id=bank_id)
        if frame_ids.size:
            self.vpdq_frames.remove(frame_ids)
            for sid in set((frame_ids >> VPDQ_FRAME_BITS).tolist()):
                self._vpdq_videos.pop(sid, None)
                removed += 1
        orb_ids = self._orb_owned.take(entry_id=entry_id, bank_id=bank_id)
        if orb_ids.size and self._orb is not None:
            removed += self._orb.remove(orb_ids.tolist())
        text_ids = self._minhash_owned.take(entry_id=entry_id, bank_id=bank_id)
        if text_ids.size and self._minhash is not None:
            removed += self._minhash.remove(text_ids.tolist())
        for sid, (eid, bid) in list(self._linear_owner.items()):
            if (entry_id is not None and eid == entry_id) or (bank_id is not None and bid == bank_id):
                del self._linear_owner[sid]
                for values in self._linear.values():
                    values.pop(sid, None)
                removed += 1
        return removed

    def _load_signals(self, s: Any, *conditions: Any) -> int:
        """Index the enabled, non-exact signals matching ``conditions``, streamed in batches."""
        similarity_types = [
            t.name for t in signal_registry.all_types() if not t.exact and not getattr(t, "classifier_only", False)
        ]  # classifier_only types (text_embedding) feed bastion.classifiers, never hash matches
        if not similarity_types:
            return 0
        stmt = (
            select(BankSignal.id, BankSignal.entry_id, BankSignal.bank_id, BankSignal.signal_type, BankSignal.value)
            .join(BankEntry, BankEntry.id == BankSignal.entry_id)
            .join(Bank, Bank.id == BankSignal.bank_id)
            .where(
                BankEntry.enabled.is_(True),
                Bank.enabled.is_(True),
                BankSignal.signal_type.in_(similarity_types),
                *conditions,
            )
            .order_by(BankSignal.id)
            .execution_options(yield_per=50_000)
        )
        count = 0
        for batch in s.execute(stmt).partitions():
            by_type: dict[str, list[Any]] = defaultdict(list)
            for row in batch:
                by_type[row.signal_type].append(row)
            for signal_type, rows in by_type.items():
                count += self._index_rows(signal_type, rows)
        return count

    def _index_rows(self, signal_type: str, rows: Sequence[Any]) -> int:
        ids = np.fromiter((r.id for r in rows), np.int64, len(rows))
        entries = np.fromiter((r.entry_id for r in rows), np.int64, len(rows))
        banks = np.fromiter((r.bank_id for r in rows), np.int64, len(rows))
        if signal_type == "pdq":
            self.pdq.add(ids, hashes_from_hex([r.value for r in rows]))
            self._pdq_owned.add(ids, entries, banks)
        elif signal_type == "vpdq":
            for r in rows:
                self._index_video(r.id, r.entry_id, r.bank_id, r.value)
        elif signal_type == "orb":
            from bastion.signals import orb

            if self._orb is None:
                from bastion.matching.orb_index import ORBIndex

                self._orb = ORBIndex()
            for r in rows:
                self._orb.add(r.id, orb.decode(r.value))
            self._orb_owned.add(ids, entries, banks)
        elif signal_type == "text_minhash":
            if self._minhash is None:
                from bastion.matching.text_index import MinHashIndex

                self._minhash = MinHashIndex()
            self._minhash.add(ids.tolist(), [r.value for r in rows])
            self._minhash_owned.add(ids, entries, banks)
        else:
            stype = signal_registry.get(signal_type)
            for r in rows:
                self._linear[signal_type][r.id] = stype.prepare(r.value)
                self._linear_owner[r.id] = (r.entry_id, r.bank_id)
        return len(rows)

    def _index_video(self, signal_id: int, entry_id: int, bank_id: int, value: str) -> None:
        from bastion.signals import vpdq

        frames = vpdq.parse(value)
        self._vpdq_videos[signal_id] = frames
        unique: dict[str, int] = {}
        for i, frame in enumerate(frames):
            unique.setdefault(frame.pdq, i)
        if not unique:
            return
        frame_ids = np.array([(signal_id << VPDQ_FRAME_BITS) | i for i in unique.values()], np.int64)
        self.vpdq_frames.add(frame_ids, hashes_from_hex(list(unique)))
        n = len(frame_ids)
        self._vpdq_owned.add(frame_ids, np.full(n, entry_id, np.int64), np.full(n, bank_id, np.int64))

    # -- snapshot ---------------------------------------------------------------------------------------------------
    def save(self) -> bool:
        """Save the PDQ index and feed position so the next start only applies what changed since."""
        if not self.snapshot_dir or not self._dirty:
            return False
        meta = {
            "version": SNAPSHOT_VERSION,
            "last_signal_id": self.last_signal_id,
            "last_change_seq": self.last_change_seq,
            "database": self._database_identity(),
        }
        self.snapshot_dir.mkdir(parents=True, exist_ok=True)
        self.pdq.save(self.snapshot_dir / "pdq", meta)
        tmp = self.snapshot_dir / "pdq-owners.tmp.npz"
        np.savez(tmp, **self._pdq_owned.arrays())
        tmp.replace(self.snapshot_dir / "pdq-owners.npz")
        self._dirty = False
        return True

    def _database_identity(self) -> str:
        return self.db.engine.url.render_as_string(hide_password=True)

    def _load_snapshot(self) -> bool:
        assert self.snapshot_dir is not None
        if not (self.snapshot_dir / "pdq").exists():
            return False
        try:
            index, meta = PDQIndex.load(self.snapshot_dir / "pdq")
            with np.load(self.snapshot_dir / "pdq-owners.npz") as owners:
                owned = _OwnedIds.from_arrays(owners)
        except (BastionError, OSError, ValueError, KeyError) as exc:
            log.warning("PDQ index snapshot unusable (%s): rebuilding from the database", exc)
            return False
        if meta.get("version") != SNAPSHOT_VERSION or meta.get("database") != self._database_identity():
            return False
        self.pdq, self._pdq_owned = index, owned
        # Other indexes are small and rebuilt; load them up to the snapshot's position, then refresh catches up.
        self.last_signal_id = int(meta["last_signal_id"])
        self.last_change_seq = int(meta["last_change_seq"])
        with self.db.session() as s:
            others = [t.name for t in signal_registry.all_types() if not t.exact and t.name != "pdq"]
            if others:
                self._load_signals(s, BankSignal.signal_type.in_(others), BankSignal.id <= self.last_signal_id)
        return True

    # -- matching -----------------------------------------------------------------------------------------------------
    def match(self, signals: Iterable[Signal], *, bank_ids: Iterable[int] | None = None) -> MatchResult:
        """Match ``signals`` against every enabled bank, or only the banks in ``bank_ids`` (an organisation's own
        and shared banks: the index is shared by all organisations, the filter is applied when hits are resolved,
        so another organisation's allow list never suppresses a match)."""
        wanted_banks = None if bank_ids is None else sorted(set(bank_ids))
        if wanted_banks == []:
            return MatchResult()
        hits: dict[str, list[_Hit]] = defaultdict(list)
        exact: list[tuple[str, str]] = []
        for sig in signal_registry.usable(list(signals)):
            stype = signal_registry.get(sig.type)
            if getattr(stype, "classifier_only", False):
                continue
            if stype.exact:
                exact.append((sig.type, sig.value))
            elif sig.type == "pdq":
                hits["pdq"].extend(self._match_pdq(sig))
            elif sig.type == "vpdq":
                hits["vpdq"].extend(self._match_vpdq(sig))
            elif sig.type == "orb":
                hits["orb"].extend(self._match_orb(sig))
            elif sig.type == "text_minhash":
                if self._minhash is not None:
                    threshold = self.settings.text_near_duplicate_threshold
                    for sid, similarity in self._minhash.query(sig.value, threshold):
                        hits["text_minhash"].append(
                            _Hit(sid, round(1 - similarity, 4), {"similarity": round(similarity, 4)})
                        )
            elif self._linear.get(sig.type):
                query = stype.prepare(sig.value)
                for sid, prepared in self._linear[sig.type].items():
                    d = stype.distance_prepared(query, prepared)
                    if stype.is_match(d):
                        hits[sig.type].append(_Hit(sid, d))
        matches = self._resolve(hits, exact, wanted_banks)
        return self._apply_allow_lists(matches)

    def _match_pdq(self, sig: Signal) -> list[_Hit]:
        radius = self.settings.pdq_match_threshold
        variants: dict[str, str] = {"original": sig.value}
        if self.settings.pdq_match_dihedral:
            variants.update(sig.meta.get("_variants") or {})
        best: dict[int, _Hit] = {}
        names = list(variants)
        results = self.pdq.query_many(hashes_from_hex([variants[n] for n in names]), radius)
        for name, (ids, dists) in zip(names, results, strict=True):
            for sid, d in zip(ids.tolist(), dists.tolist(), strict=True):
                if sid not in best or d < best[sid].distance:
                    best[sid] = _Hit(sid, d, {} if name == "original" else {"transform": name})
        return list(best.values())

    def _match_orb(self, sig: Signal) -> list[_Hit]:
        """Bank pictures agreeing on enough keypoints; the submission is queried with all its keypoints when it was
        computed here (``meta["_query"]``), else with those of the signal string."""
        if self._orb is None or not len(self._orb):
            return []
        from bastion.signals import orb

        query = sig.meta.get("_query") or orb.decode(sig.value)
        found = self._orb.query(query, self.settings.orb_descriptor_radius, self.settings.orb_min_inliers)
        return [_Hit(sid, float(max(0, orb.DISTANCE_CAP - v.inliers)), v.detail()) for sid, v in found]

    def _match_vpdq(self, sig: Signal) -> list[_Hit]:
        """Bank videos sharing at least one frame are candidates; vPDQ's own percentages decide."""
        from bastion.signals import vpdq

        frames = vpdq.parse(sig.value)
        unique = sorted({f.pdq for f in frames if f.quality >= self.settings.pdq_min_quality})
        if not unique or not self._vpdq_videos:
            return []
        results = self.vpdq_frames.query_many(hashes_from_hex(unique), self.settings.vpdq_frame_threshold)
        candidates = {int(sid) for ids, _ in results for sid in np.unique(ids >> VPDQ_FRAME_BITS)}
        out = []
        for sid in sorted(candidates):
            bank_frames = self._vpdq_videos.get(sid)
            if not bank_frames:
                continue
            query_pct, bank_pct = vpdq.match_percent(frames, bank_frames)
            if query_pct >= self.settings.vpdq_match_percent:
                detail = {"query_match_percent": round(query_pct, 2), "bank_match_percent": round(bank_pct, 2)}
                out.append(_Hit(sid, round(100.0 - query_pct, 2), detail))
        return out

    def _resolve(
        self, hits: dict[str, list[_Hit]], exact: list[tuple[str, str]], bank_ids: list[int] | None = None
    ) -> list[Match]:
        """Turn index hits and exact lookups into matches, keeping only enabled entries of enabled banks."""
        base = _RESOLVE_BASE
        if bank_ids is not None:
            base = base.where(Bank.id.in_(bank_ids))
        by_id = {h.signal_id: h for hs in hits.values() for h in hs}
        matches: list[Match] = []
        # One query for the common case: index hits by id, exact signals by (type, key), all OR-ed together.
        ids = list(by_id)
        wanted = [and_(BankSignal.signal_type == t, BankSignal.lookup_key == lookup_key(v)) for t, v in exact]
        rows: list[Any] = []
        if not ids and not wanted:
            return []
        with self.db.engine.connect() as s:  # Core, not the ORM session: this runs once per scanned file
            first, rest = ids[:500], ids[500:]
            rows += s.execute(base.where(or_(BankSignal.id.in_(first), *wanted))).all()
            for i in range(0, len(rest), 500):
                rows += s.execute(base.where(BankSignal.id.in_(rest[i : i + 500]))).all()
        seen: set[int] = set()
        for r in rows:
            if r.id in seen:
                continue
            seen.add(r.id)
            hit = by_id.get(r.id)
            matches.append(
                Match(
                    bank=r.name,
                    bank_kind=r.kind,
                    entry_id=r.entry_id,
                    signal_type=r.signal_type,
                    distance=hit.distance if hit else 0,
                    labels=dict(r.labels or {}),
                    source=r.source,
                    signal_id=r.id,
                    detail=dict(hit.detail) if hit else {},
                    bank_id=r.bank_id,
                )
            )
        # ORB matches come after the others: distances of different types do not compare, and a keypoint match is
        # the loosest evidence (a picture inside a screenshot), so a PDQ or exact match of the same entry leads
        matches.sort(key=lambda m: (m.signal_type in LISTED_LAST, m.distance, m.bank, m.entry_id, m.signal_type))
        return matches

    @staticmethod
    def _apply_allow_lists(matches: list[Match]) -> MatchResult:
        allows = [m for m in matches if m.bank_kind == "allow"]
        blocks = [m for m in matches if m.bank_kind != "allow"]
        if allows:
            return MatchResult(matches=[], suppressed=blocks, allowed_by=allows)
        return MatchResult(matches=blocks)


def snapshot_dir_for(settings: Settings) -> Path:
    return settings.data_dir / "index"


def open_matcher(db: Database, settings: Settings | None = None) -> Matcher:
    """A matcher over ``db`` that starts from the saved index snapshot when there is one, refreshed."""
    settings = settings or get_settings()
    matcher = Matcher(db, settings, snapshot_dir=snapshot_dir_for(settings))
    matcher.refresh()
    matcher.save()
    return matcher
