"""Semantic similarity: how close in meaning a text is to the texts banked in an organisation's banks.

Banked texts keep no text, only signals; their ``text_embedding`` signal (:mod:`bastion.signals.embedding`:
multilingual-e5-small, 384 int8 components) is stored when they are banked (``BankService.add_entry`` /
``add_files`` compute every signal). This module keeps, per process and per database, one matrix of every enabled
banked embedding, refreshed incrementally like the Matcher: signals with an id above the last one seen are
appended (``bank_signals`` ids only grow), and the ``bank_changes`` feed removes the rows of disabled or deleted
entries and banks (and reloads re-enabled ones). A query is one matrix-vector product over the rows of the banks
the organisation may match against; the best hits are then re-checked in the database (entry and bank still
enabled, labels) before they are reported.

Score: e5's cosine similarities are compressed (unrelated sentences land around 0.75-0.88, paraphrases and
translations above 0.90; bench/bench_classifiers.py measures it), so the reported score is rescaled:
``score = (cosine - 0.80) / 0.20`` clipped to 0..1 (cosine 0.90 is 0.5, identical text 1.0). Only a best score at
or above the organisation's ``min_score`` (default 0.5) is reported, with the top ``top_k`` entries as details.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import numpy as np
from sqlalchemy import func, select

from bastion.classifiers import (
    Classifier,
    ClassifierContext,
    ClassifierInput,
    ClassifierResult,
    ClassifierScore,
    InvalidClassifierConfig,
)
from bastion.signals import embedding
from bastion.storage.db import Database
from bastion.storage.models import Bank, BankChange, BankEntry, BankSignal

SIGNAL_TYPE = "text_embedding"
COSINE_FLOOR = 0.80
DEFAULT_MIN_SCORE = 0.5


def score_of(cosine: float) -> float:
    """The reported 0..1 score of a cosine similarity (see the module docstring)."""
    return float(min(1.0, max(0.0, (cosine - COSINE_FLOOR) / (1.0 - COSINE_FLOOR))))


def cosine_of(score: float) -> float:
    return COSINE_FLOOR + score * (1.0 - COSINE_FLOOR)


class EmbeddingIndex:
    """Every enabled banked ``text_embedding`` of one database, as a matrix, kept fresh by id and change feed."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._lock = threading.Lock()
        self._clear()

    def _clear(self) -> None:
        self.vectors = np.zeros((0, embedding.DIM), dtype=np.float32)
        self.signal_ids = np.zeros(0, dtype=np.int64)
        self.entry_ids = np.zeros(0, dtype=np.int64)
        self.bank_ids = np.zeros(0, dtype=np.int64)
        self.last_signal_id = 0
        self.last_change_seq = 0

    def __len__(self) -> int:
        return len(self.signal_ids)

    def refresh(self) -> None:
        with self._lock, self.db.session() as s:
            max_seq = s.scalar(select(func.max(BankChange.seq))) or 0
            max_id = s.scalar(select(func.max(BankSignal.id))) or 0
            if max_id < self.last_signal_id or max_seq < self.last_change_seq:  # a new or emptied database
                self._clear()
            if max_seq > self.last_change_seq:
                for change in s.scalars(
                    select(BankChange).where(BankChange.seq > self.last_change_seq).order_by(BankChange.seq)
                ):
                    self._apply_change(s, change)
                self.last_change_seq = max_seq
            if max_id > self.last_signal_id:
                self._load(s, BankSignal.id > self.last_signal_id, BankSignal.id <= max_id)
                self.last_signal_id = max_id

    def _apply_change(self, s: Any, change: BankChange) -> None:
        kind = change.kind
        if kind in ("entry_disabled", "entry_deleted", "entry_enabled"):
            self._forget(self.entry_ids == change.entry_id)
        elif kind in ("bank_disabled", "bank_deleted", "bank_enabled"):
            self._forget(self.bank_ids == change.bank_id)
        if kind == "entry_enabled":
            self._load(s, BankSignal.entry_id == change.entry_id, BankSignal.id <= self.last_signal_id)
        elif kind == "bank_enabled":
            self._load(s, BankSignal.bank_id == change.bank_id, BankSignal.id <= self.last_signal_id)

    def _forget(self, mask: np.ndarray) -> None:
        if mask.any():
            keep = ~mask
            self.vectors, self.signal_ids = self.vectors[keep], self.signal_ids[keep]
            self.entry_ids, self.bank_ids = self.entry_ids[keep], self.bank_ids[keep]

    def _load(self, s: Any, *conditions: Any) -> None:
        stmt = (
            select(BankSignal.id, BankSignal.entry_id, BankSignal.bank_id, BankSignal.value)
            .join(BankEntry, BankEntry.id == BankSignal.entry_id)
            .join(Bank, Bank.id == BankSignal.bank_id)
            .where(
                BankEntry.enabled.is_(True),
                Bank.enabled.is_(True),
                BankSignal.signal_type == SIGNAL_TYPE,
                *conditions,
            )
            .order_by(BankSignal.id)
            .execution_options(yield_per=20_000)
        )
        for batch in s.execute(stmt).partitions():
            vectors = []
            kept = []
            for r in batch:
                try:
                    vectors.append(embedding.decode_vector(r.value))
                    kept.append(r)
                except Exception:  # noqa: BLE001 - a malformed stored value is skipped, not fatal
                    continue
            if not kept:
                continue
            self.vectors = np.concatenate([self.vectors, np.stack(vectors)])
            self.signal_ids = np.concatenate([self.signal_ids, np.array([r.id for r in kept], dtype=np.int64)])
            self.entry_ids = np.concatenate([self.entry_ids, np.array([r.entry_id for r in kept], dtype=np.int64)])
            self.bank_ids = np.concatenate([self.bank_ids, np.array([r.bank_id for r in kept], dtype=np.int64)])

    def search(self, vector: np.ndarray, bank_ids: list[int], min_cosine: float, k: int) -> list[tuple[int, float]]:
        """(signal id, cosine) of the best ``k`` rows of the given banks at or above ``min_cosine``."""
        with self._lock:
            mask = np.isin(self.bank_ids, np.asarray(bank_ids, dtype=np.int64))
            if not mask.any():
                return []
            rows = np.flatnonzero(mask)
            sims = (self.vectors @ vector.astype(np.float32))[rows]  # no copy of the selected rows
            ids = self.signal_ids[rows]
        good = np.flatnonzero(sims >= min_cosine - 1e-6)
        order = good[np.argsort(-sims[good], kind="stable")][: max(k * 4, k)]
        return [(int(ids[i]), float(sims[i])) for i in order]


_INDEXES: weakref.WeakKeyDictionary[Database, EmbeddingIndex] = weakref.WeakKeyDictionary()
_INDEXES_LOCK = threading.Lock()


def embedding_index(db: Database) -> EmbeddingIndex:
    """The process-wide index of ``db`` (created on first use), refreshed."""
    with _INDEXES_LOCK:
        idx = _INDEXES.get(db)
        if idx is None:
            idx = _INDEXES[db] = EmbeddingIndex(db)
    idx.refresh()
    return idx


class SemanticClassifier(Classifier):
    """Similarity of meaning to banked texts (multilingual): score = rescaled best cosine, details = top entries."""

    name = "semantic"
    defaults = {"enabled": True, "min_score": DEFAULT_MIN_SCORE, "top_k": 3}

    @classmethod
    def validate_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        merged = super().validate_options(options)
        value = merged["min_score"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise InvalidClassifierConfig(
                "classifiers.semantic.min_score must be a number from 0 to 1", classifier=cls.name
            )
        merged["min_score"] = float(value)
        k = merged["top_k"]
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 20:
            raise InvalidClassifierConfig(
                "classifiers.semantic.top_k must be an integer from 1 to 20", classifier=cls.name
            )
        return merged

    def classify(self, inp: ClassifierInput, options: dict[str, Any], ctx: ClassifierContext) -> ClassifierResult:
        result = ClassifierResult()
        if ctx.db is None or not ctx.bank_ids or not embedding.available():
            return result
        idx = embedding_index(ctx.db)
        if not len(idx):
            return result
        if inp.text_embedding:
            vector = embedding.decode_vector(inp.text_embedding)
        else:
            vector = embedding.embed_texts([inp.text or ""])[0]
        if not vector.any():
            return result
        min_cosine = cosine_of(options["min_score"])
        hits = idx.search(vector, ctx.bank_ids, min_cosine, options["top_k"])
        if not hits:
            return result
        matches = self._resolve(ctx, hits)[: options["top_k"]]
        if not matches:
            return result
        best = matches[0]
        result.scores.append(
            ClassifierScore(
                self.name,
                "similar_to_banked_text",
                best["score"],
                {"model": embedding.MODEL_ID, "matches": matches},
            )
        )
        return result

    @staticmethod
    def _resolve(ctx: ClassifierContext, hits: list[tuple[int, float]]) -> list[dict[str, Any]]:
        """The hits whose entry and bank are still enabled and in ``ctx.bank_ids``, best first, one per entry."""
        assert ctx.db is not None
        cosine = dict(hits)
        with ctx.db.engine.connect() as conn:
            rows = conn.execute(
                select(
                    BankSignal.id, BankSignal.entry_id, Bank.id.label("bank_id"), Bank.name, Bank.kind, BankEntry.labels
                )
                .join(BankEntry, BankEntry.id == BankSignal.entry_id)
                .join(Bank, Bank.id == BankSignal.bank_id)
                .where(
                    BankSignal.id.in_(list(cosine)),
                    BankEntry.enabled.is_(True),
                    Bank.enabled.is_(True),
                    Bank.id.in_(ctx.bank_ids),
                    Bank.kind != "allow",  # an allow list's texts are not evidence against a text
                )
            ).all()
        out: dict[int, dict[str, Any]] = {}
        for r in sorted(rows, key=lambda r: (-cosine[r.id], r.entry_id)):
            if r.entry_id in out:
                continue
            out[r.entry_id] = {
                "entry_id": r.entry_id,
                "bank": r.name,
                "bank_id": r.bank_id,
                "bank_kind": r.kind,
                "labels": dict(r.labels or {}),
                "cosine": round(cosine[r.id], 4),
                "score": round(score_of(cosine[r.id]), 4),
            }
        return list(out.values())
