"""Retro-scan: which of an organisation's recent submissions match hashes that just arrived.

The incident protocol (a livestreamed attack: the forum's first hashes of it arrive minutes after it starts) needs
more than "match from now on": copies uploaded *before* the hashes arrived must be found too. Every submission's
signals are kept with it (``content_items.signals``, a JSON list of ``{"type", "value", "quality"}``), so a rescan
reads them back for the organisation's submissions received since ``since`` and compares them with the few new
hashes, by the same rules the live matcher uses:

* exact types (``md5``, ``sha256``, ``url``, ``text``...: ``SignalType.exact``) by equality, in SQL
  (``value IN (...)``): only the hits leave the database;
* 256-bit Hamming types (PDQ) vectorised: the stored values stream out in chunks, are decoded to four uint64 words
  each, XORed against every new hash at once and counted with ``numpy.bitwise_count``; a pair hits when the type's
  own ``is_match`` accepts the distance (PDQ: ``BASTION_PDQ_MATCH_THRESHOLD``);
* any other type (vPDQ, TMK, text MinHash) by its ``prepare`` / ``distance_prepared`` / ``is_match``, value by value.

The signals are read out of the JSON in the database (SQLite ``json_each``, PostgreSQL ``json_array_elements``),
so Python never parses a submission's whole signal list; the organisation and window use
``ix_content_items_org_created``. bench/bench_forum.py measures 1,000,000 submissions against 100 new hashes.

PDQ's dihedral variants (rotated and mirrored copies) are not stored with a submission, so a rescan finds a
rotated copy only if the *new* side carries the rotated hash; the live matcher, which has the variants, does not
have that limit.

The rescan only reads: the forum's incident protocol turns hits into decisions in its own transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Select, String, cast, func, select
from sqlalchemy.orm import Session

from bastion import signals as signal_registry
from bastion.errors import InvalidSignal
from bastion.exchanges.base import ExchangedSignal
from bastion.signals.base import SignalType
from bastion.storage.db import Database
from bastion.storage.models import ContentItem, as_utc

#: signal types whose values are 256-bit hashes written as 64 hex characters, compared by Hamming distance
HAMMING_256_TYPES = frozenset({"pdq"})
#: rows fetched from the database at a time (and decoded into one NumPy block)
CHUNK_ROWS = 20_000
#: stored hashes compared with all new hashes at once (bounds the XOR block: rows x new x 4 words x 8 bytes)
BLOCK_ROWS = 4_096
#: exact values sent in one SQL ``IN (...)`` list
IN_LIST_SIZE = 500


@dataclass(frozen=True)
class RescanHit:
    """One stored submission whose signal matched one new hash."""

    content_id: int
    external_id: str
    signal_type: str
    content_value: str  # the submission's stored signal value
    signal: ExchangedSignal  # the new hash it matched (labels, source id, incident: the evidence)
    distance: float


def rescan_recent(
    db: Database | Session, organisation_id: int, signals: Sequence[ExchangedSignal], since: datetime
) -> list[RescanHit]:
    """The organisation's submissions received at or after ``since`` whose stored signals match ``signals``.

    ``db`` is a :class:`Database` (a read-only session is opened) or a caller's ``Session`` (read within its
    transaction). Retracted signals are skipped; a malformed or unknown one raises ``InvalidSignal`` before anything
    is read. Each (submission, new hash) pair is reported once, at its smallest distance; hits are ordered by
    content id, then signal type, then distance.
    """
    wanted = _group_by_type(signals)
    if not wanted:
        return []
    since = as_utc(since)
    if isinstance(db, Session):
        return _rescan(db, organisation_id, wanted, since)
    with db.session() as s:
        return _rescan(s, organisation_id, wanted, since)


def _group_by_type(signals: Iterable[ExchangedSignal]) -> dict[str, list[tuple[str, ExchangedSignal]]]:
    """Canonical values per signal type (validated here, so a bad hash fails before any reading)."""
    out: dict[str, list[tuple[str, ExchangedSignal]]] = {}
    for sig in signals:
        if sig.retracted:
            continue
        value = signal_registry.validate(sig.signal_type, sig.value)
        out.setdefault(sig.signal_type, []).append((value, sig))
    return out


def _rescan(
    s: Session, org: int, wanted: dict[str, list[tuple[str, ExchangedSignal]]], since: datetime
) -> list[RescanHit]:
    best: dict[tuple[int, int], RescanHit] = {}  # (content id, id of the new signal) -> smallest-distance hit
    for type_name, values in wanted.items():
        t = signal_registry.get(type_name)
        if t.exact:
            found = _exact_hits(s, org, since, type_name, values)
        elif type_name in HAMMING_256_TYPES:
            found = _hamming_hits(s, org, since, t, values)
        else:
            found = _generic_hits(s, org, since, t, values)
        for hit in found:
            key = (hit.content_id, id(hit.signal))
            if key not in best or hit.distance < best[key].distance:
                best[key] = hit
    return sorted(best.values(), key=lambda h: (h.content_id, h.signal_type, h.distance, h.signal.value))


# -- reading stored signals out of the JSON, in the database ----------------------------------------------------------
def _stored_signals(s: Session, org: int, since: datetime, type_name: str) -> tuple[Select[Any], Any]:
    """SELECT (content id, external id, value) of every stored ``type_name`` signal in the window; and the value
    column, for a caller that adds ``WHERE value IN (...)``."""
    if s.get_bind().dialect.name == "postgresql":
        element = func.json_array_elements(ContentItem.signals).table_valued("value", joins_implicitly=True)
        kind = element.c.value.op("->>")("type")
        value = element.c.value.op("->>")("value")
    else:
        element = func.json_each(ContentItem.signals).table_valued("value", joins_implicitly=True)
        kind = func.json_extract(element.c.value, "$.type")
        value = func.json_extract(element.c.value, "$.value")
    value = cast(value, String)
    stmt = (
        select(ContentItem.id, ContentItem.external_id, value)
        .select_from(ContentItem)
        .join(element, ContentItem.id == ContentItem.id)  # the lateral JSON expansion
        .where(ContentItem.organisation_id == org, ContentItem.created_at >= since, kind == type_name)
    )
    return stmt, value


def _stream(s: Session, stmt: Select[Any]) -> Iterator[list[Any]]:
    """Rows in chunks of :data:`CHUNK_ROWS` (a server-side cursor on PostgreSQL: memory stays flat)."""
    result = s.execute(stmt.execution_options(yield_per=CHUNK_ROWS))
    for part in result.partitions(CHUNK_ROWS):
        yield list(part)


def _exact_hits(
    s: Session, org: int, since: datetime, type_name: str, values: list[tuple[str, ExchangedSignal]]
) -> Iterator[RescanHit]:
    by_value: dict[str, list[ExchangedSignal]] = {}
    for value, sig in values:
        by_value.setdefault(value, []).append(sig)
    keys = sorted(by_value)
    base, column = _stored_signals(s, org, since, type_name)
    for start in range(0, len(keys), IN_LIST_SIZE):
        for content_id, external_id, stored in s.execute(base.where(column.in_(keys[start : start + IN_LIST_SIZE]))):
            for sig in by_value.get(stored, ()):
                yield RescanHit(content_id, external_id, type_name, stored, sig, 0.0)


def _largest_matching_distance(t: type[SignalType]) -> int:
    """The type's own threshold, read from its ``is_match`` (assumed monotone) rather than a copy of its setting."""
    return max((d for d in range(257) if t.is_match(float(d))), default=-1)


def hex_words(values: Sequence[str]) -> np.ndarray:
    """64-hex-character hashes as an (n, 4) array of big-endian uint64 words (one ``bytes.fromhex`` for all)."""
    return np.frombuffer(bytes.fromhex("".join(values)), dtype=">u8").astype(np.uint64).reshape(len(values), 4)


def hamming_block(stored: np.ndarray, new: np.ndarray) -> np.ndarray:
    """(n, m) Hamming distances between stored (n, 4) and new (m, 4) hashes."""
    return np.bitwise_count(stored[:, None, :] ^ new[None, :, :]).sum(axis=2, dtype=np.uint16)


def _hamming_hits(
    s: Session, org: int, since: datetime, t: type[SignalType], values: list[tuple[str, ExchangedSignal]]
) -> Iterator[RescanHit]:
    threshold = _largest_matching_distance(t)
    if threshold < 0:
        return
    new = hex_words([v for v, _ in values])
    stmt, _ = _stored_signals(s, org, since, t.name)
    for rows in _stream(s, stmt):
        rows = [r for r in rows if _is_hex64(r[2])]  # a stored value that is not a hash cannot match; never fails
        if not rows:
            continue
        stored = hex_words([r[2].lower() for r in rows])
        for start in range(0, len(rows), BLOCK_ROWS):
            distances = hamming_block(stored[start : start + BLOCK_ROWS], new)
            for i, j in zip(*np.nonzero(distances <= threshold), strict=True):
                d = float(distances[i, j])
                if t.is_match(d):
                    content_id, external_id, stored_value = rows[start + int(i)]
                    yield RescanHit(content_id, external_id, t.name, stored_value, values[int(j)][1], d)


def _is_hex64(value: object) -> bool:
    if not isinstance(value, str) or len(value) != 64:
        return False
    try:
        int(value, 16)
    except ValueError:
        return False
    return True


def _generic_hits(
    s: Session, org: int, since: datetime, t: type[SignalType], values: list[tuple[str, ExchangedSignal]]
) -> Iterator[RescanHit]:
    prepared = [(t.prepare(v), sig) for v, sig in values]
    stmt, _ = _stored_signals(s, org, since, t.name)
    for rows in _stream(s, stmt):
        for content_id, external_id, stored_value in rows:
            try:
                stored = t.prepare(t.validate(stored_value))
            except InvalidSignal:
                continue
            for new, sig in prepared:
                d = float(t.distance_prepared(stored, new))
                if t.is_match(d):
                    yield RescanHit(content_id, external_id, t.name, stored_value, sig, d)


__all__ = ["RescanHit", "rescan_recent", "hex_words", "hamming_block", "HAMMING_256_TYPES"]
