"""Retro-scan: which of an organisation's recent submissions match hashes that just arrived.

The incident protocol (a livestreamed attack: the forum's first hashes of it arrive minutes after it starts) needs
more than "match from now on": copies uploaded *before* the hashes arrived must be found too. Every submission's
signals are kept with it (``content_items.signals``, a JSON list of ``{"type", "value", "quality"}``), so a rescan
reads them back for the organisation's submissions received since ``since`` and compares them with the few new
hashes, by the same rules the live matcher uses:

* exact types (``md5``, ``sha256``, ``url``, ``text``...: ``SignalType.exact``) by equality: a set intersection;
* 256-bit Hamming types (PDQ) vectorised: each chunk's values are decoded to four uint64 words at once
  (``bytes.fromhex``), XORed against every new hash and counted with ``numpy.bitwise_count`` word by word; a pair
  hits when the type's own ``is_match`` accepts the distance (PDQ: ``BASTION_PDQ_MATCH_THRESHOLD``);
* any other type (vPDQ, TMK, text MinHash) by its ``prepare`` / ``distance_prepared`` / ``is_match``, value by value.

Reading is the expensive part (JSON functions in SQL measured 9 s per million rows on SQLite, ``json.loads`` in
Python as much): the rows stream through the driver's own cursor (server-side on PostgreSQL) as
``<signals JSON> US <id>`` strings, a chunk of them is joined into one string, and one regular expression per type
pulls out every value of the chunk in C. A chunk whose JSON the expression does not account for (another key
order, an escaped character) is decoded row by row with ``json.loads`` instead, so it costs time, never a hit.
The organisation and window use ``ix_content_items_org_created``. bench/bench_forum.py measures 1,000,000
submissions against 100 new hashes, with a naive per-row loop as the baseline.

PDQ's dihedral variants (rotated and mirrored copies) are not stored with a submission, so a rescan finds a
rotated copy only if the *new* side carries the rotated hash; the live matcher, which has the variants, does not
have that limit.

The rescan only reads: the forum's incident protocol turns hits into decisions in its own transaction.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from queue import Empty, Queue
from typing import Any

import numpy as np
from sqlalchemy import select
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
#: stored hashes compared with all new hashes at once (bounds the XOR block: rows x new x 8 bytes)
BLOCK_ROWS = 8_192
#: up to this many hitting values in a chunk are located by ``str.find`` each, more by one regex pass
FIND_VALUES = 8
#: ids sent in one SQL ``IN (...)`` list
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
    matchers = [_matcher_for(signal_registry.get(name), values) for name, values in wanted.items()]
    best: dict[tuple[int, int], tuple[str, str, ExchangedSignal, float]] = {}  # (content, new signal) -> hit
    for chunk in _stored_chunks(s, org, since):
        for matcher in matchers:
            stored = _ChunkSignals(chunk, matcher.type.name)
            found = list(matcher.hits(stored.values))
            if not found:
                continue
            rows = stored.ids_of({value for value, _, _ in found})
            for value, sig, d in found:
                for content_id in rows[value]:
                    key = (content_id, id(sig))
                    if key not in best or d < best[key][3]:
                        best[key] = (matcher.type.name, value, sig, d)
    external = _external_ids(s, sorted({content_id for content_id, _ in best}))
    hits = [
        RescanHit(content_id, external.get(content_id, ""), t, v, sig, d)
        for (content_id, _), (t, v, sig, d) in best.items()
    ]
    return sorted(hits, key=lambda h: (h.content_id, h.signal_type, h.distance, h.signal.value))


# -- reading stored signals --------------------------------------------------------------------------------------------
_RS, _US = "\x1e", "\x1f"  # between rows; between a row's signals JSON and its id
#: a stored signal as Bastion writes it (``Signal.to_dict`` through the JSON column: type, then value)
_SIGNAL = '"type": "{name}", "value": "{value}"'
_ANY_VALUE = r'([^"\\\x1e]*)'
_HEX64_VALUE = r"([0-9a-f]{64})"  # the canonical form: any other value of a Hamming type goes the row-by-row way


def _stored_chunks(s: Session, org: int, since: datetime) -> Iterator[str]:
    """The window's submissions as text chunks of ``<signals JSON> US <id>`` rows joined by RS, read with the
    driver's own cursor (a server-side one on PostgreSQL, so memory stays flat): a million rows cost no Python
    objects beyond one string each. A reader thread fetches the next chunk while the caller compares this one (the
    drivers release the GIL while the database works); it is the connection's only user until it is done."""
    conn = s.connection()
    dialect = conn.dialect
    if dialect.name == "postgresql":
        sql = (
            "SELECT signals::text || chr(31) || id::text FROM content_items"
            " WHERE organisation_id = %(org)s AND created_at >= %(since)s"
        )
        cursor = conn.connection.driver_connection.cursor(name="bastion_rescan")  # type: ignore[union-attr]
        params: dict[str, Any] | tuple[Any, ...] = {"org": org, "since": since}
    else:
        sql = "SELECT signals || char(31) || id FROM content_items WHERE organisation_id = ? AND created_at >= ?"
        cursor = conn.connection.cursor()
        bind = ContentItem.__table__.c.created_at.type.dialect_impl(dialect).bind_processor(dialect)
        params = (org, bind(since) if bind else since)
    chunks: Queue[str | BaseException | None] = Queue(maxsize=2)
    stop = threading.Event()

    def read() -> None:
        try:
            cursor.execute(sql, params)
            while not stop.is_set() and (rows := cursor.fetchmany(CHUNK_ROWS)):
                chunks.put(_RS.join([r[0] for r in rows]))
            chunks.put(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            chunks.put(exc)

    reader = threading.Thread(target=read, name="bastion-rescan-reader", daemon=True)
    reader.start()
    try:
        while (chunk := chunks.get()) is not None:
            if isinstance(chunk, BaseException):
                raise chunk
            yield chunk
    finally:
        stop.set()
        while reader.is_alive():  # let a reader blocked on a full queue finish, then close its cursor
            with contextlib.suppress(Empty):
                chunks.get(timeout=0.05)
        cursor.close()


class _ChunkSignals:
    """The values of one type's stored signals in a chunk, and the rows (content ids) the hitting ones are in.

    Fast path: one C-level ``findall`` over the whole chunk for ``"type": "<name>", "value": "..."``. Only when some
    values hit is the chunk walked again (``finditer``) to find their rows: a row's id follows the next US. When the
    chunk mentions the type more often than the expression found (a row written in another JSON layout, an escaped
    character in a value), the chunk is decoded row by row with ``json.loads`` instead: a layout the expression does
    not know costs time, never hits.
    """

    def __init__(self, chunk: str, type_name: str) -> None:
        self.chunk, self.type_name = chunk, type_name
        self.values: list[str] = _pattern(type_name).findall(chunk)
        self._by_value: dict[str, list[int]] | None = None
        if chunk.count(f'"{type_name}"') != len(self.values):
            self._by_value = {}
            for row in chunk.split(_RS):
                text, _, content_id = row.rpartition(_US)
                for sig in json.loads(text):
                    if isinstance(sig, dict) and sig.get("type") == type_name and isinstance(sig.get("value"), str):
                        self._by_value.setdefault(sig["value"], []).append(int(content_id))
            self.values = list(self._by_value)

    def ids_of(self, values: set[str]) -> dict[str, list[int]]:
        """The content ids of the rows holding each of ``values``."""
        if self._by_value is not None:
            return {v: self._by_value.get(v, []) for v in values}
        out: dict[str, list[int]] = {v: [] for v in values}
        chunk = self.chunk
        if len(values) <= FIND_VALUES:  # a few: one str.find pass per value
            for value in values:
                at = chunk.find(needle := _SIGNAL.format(name=self.type_name, value=value))
                while at >= 0:
                    out[value].append(self._id_after(at))
                    at = chunk.find(needle, at + len(needle))
        else:  # many: one regex pass for all
            for m in _pattern(self.type_name).finditer(chunk):
                if m.group(1) in out:
                    out[m.group(1)].append(self._id_after(m.start()))
        return out

    def _id_after(self, at: int) -> int:
        start = self.chunk.index(_US, at) + 1
        end = self.chunk.find(_RS, start)
        return int(self.chunk[start : end if end >= 0 else len(self.chunk)])


@lru_cache(maxsize=64)
def _pattern(type_name: str) -> re.Pattern[str]:
    head, tail = _SIGNAL.format(name=type_name, value="\x00").split("\x00")
    value = _HEX64_VALUE if type_name in HAMMING_256_TYPES else _ANY_VALUE
    return re.compile(re.escape(head) + value + re.escape(tail))


def _external_ids(s: Session, ids: list[int]) -> dict[int, str]:
    out: dict[int, str] = {}
    for start in range(0, len(ids), IN_LIST_SIZE):
        part = ids[start : start + IN_LIST_SIZE]
        out.update(s.execute(select(ContentItem.id, ContentItem.external_id).where(ContentItem.id.in_(part))).all())
    return out


# -- comparing ---------------------------------------------------------------------------------------------------------
Hit = tuple[str, ExchangedSignal, float]  # the stored value, the new signal it matched, their distance


class _ExactMatcher:
    """Equality on canonical values: a set intersection per chunk."""

    def __init__(self, t: type[SignalType], values: list[tuple[str, ExchangedSignal]]) -> None:
        self.type = t
        self.by_value: dict[str, list[ExchangedSignal]] = {}
        for value, sig in values:
            self.by_value.setdefault(value, []).append(sig)

    def hits(self, stored: list[str]) -> Iterator[Hit]:
        for value in self.by_value.keys() & set(stored):
            for sig in self.by_value[value]:
                yield value, sig, 0.0


class _HammingMatcher:
    """256-bit hashes: every stored hash against every new one at once, in uint64 words (see the module doc)."""

    def __init__(self, t: type[SignalType], values: list[tuple[str, ExchangedSignal]]) -> None:
        self.type = t
        self.values = values
        self.threshold = _largest_matching_distance(t)
        self.new = hex_words([v for v, _ in values])
        self.new_ints = [int(v, 16) for v, _ in values]

    def hits(self, stored: list[str]) -> Iterator[Hit]:
        if self.threshold < 0 or not stored:
            return
        try:  # the fast path's values are canonical; rows decoded one by one may hold anything
            if any(len(v) != 64 for v in stored):
                raise ValueError("not a 256-bit hash")
            words = hex_words(stored)
        except ValueError:  # a value that is not a hash cannot match: leave it (and only it) out
            stored = [v for v in stored if len(v) == 64 and _is_hex(v)]
            words = hex_words(stored)
        for start in range(0, len(stored), BLOCK_ROWS):
            below = hamming_block(words[start : start + BLOCK_ROWS], self.new) <= self.threshold
            for i, j in zip(*np.nonzero(below), strict=True):
                value = stored[start + int(i)]
                # exact distance in Python for the few candidates: also guards the uint8 sum's wrap at 256
                d = float((int(value, 16) ^ self.new_ints[j]).bit_count())
                if self.type.is_match(d):
                    yield value, self.values[int(j)][1], d


class _GenericMatcher:
    """Any other type, by its own prepared distance and ``is_match``, value by value."""

    def __init__(self, t: type[SignalType], values: list[tuple[str, ExchangedSignal]]) -> None:
        self.type = t
        self.prepared = [(t.prepare(v), sig) for v, sig in values]

    def hits(self, stored: list[str]) -> Iterator[Hit]:
        t = self.type
        for value in set(stored):
            try:
                mine = t.prepare(t.validate(value))
            except InvalidSignal:
                continue
            for new, sig in self.prepared:
                d = float(t.distance_prepared(mine, new))
                if t.is_match(d):
                    yield value, sig, d


def _matcher_for(
    t: type[SignalType], values: list[tuple[str, ExchangedSignal]]
) -> _ExactMatcher | _HammingMatcher | _GenericMatcher:
    if t.exact:
        return _ExactMatcher(t, values)
    if t.name in HAMMING_256_TYPES:
        return _HammingMatcher(t, values)
    return _GenericMatcher(t, values)


def _largest_matching_distance(t: type[SignalType]) -> int:
    """The type's own threshold, read from its ``is_match`` (assumed monotone) rather than a copy of its setting."""
    return max((d for d in range(257) if t.is_match(float(d))), default=-1)


def hex_words(values: Sequence[str]) -> np.ndarray:
    """64-hex-character hashes as an (n, 4) array of big-endian uint64 words (one ``bytes.fromhex`` for all)."""
    return np.frombuffer(bytes.fromhex("".join(values)), dtype=">u8").astype(np.uint64).reshape(len(values), 4)


def hamming_block(stored: np.ndarray, new: np.ndarray) -> np.ndarray:
    """(n, m) Hamming distances between stored (n, 4) and new (m, 4) hashes, summed word by word in uint8 (an
    (n, m) array per step rather than (n, m, 4)); a distance of 256 wraps to 0, so callers re-check candidates."""
    d = np.bitwise_count(stored[:, 0:1] ^ new[None, :, 0])
    for w in range(1, 4):
        d += np.bitwise_count(stored[:, w : w + 1] ^ new[None, :, w])
    return d


def _is_hex(value: str) -> bool:
    try:
        int(value, 16)
    except ValueError:
        return False
    return True


__all__ = ["RescanHit", "rescan_recent", "hex_words", "hamming_block", "HAMMING_256_TYPES"]
