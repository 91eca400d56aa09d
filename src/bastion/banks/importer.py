"""Bulk import of hash records into one bank, in one transaction, fast enough for million-hash lists.

Per-row ORM objects cost ~100 µs each; a million hashes must go in under a minute on SQLite and PostgreSQL. So
records are validated in batches (validators, labels and sources are cached: lists repeat the same few label sets)
and written with the driver directly: ``executemany`` on SQLite, ``COPY`` on PostgreSQL, entry ids allocated up
front so signals can point at them. Everything happens in the caller's transaction: an import killed half-way
leaves the bank as it was.

Ordering: every bank write takes :func:`lock_bank_writes` first, so signal ids become visible in id order (the
matcher loads "signals with id > last seen"; on PostgreSQL, ids from a sequence could otherwise commit out of order).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from queue import Queue
from threading import Thread
from typing import Any

from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

from bastion import signals as registry
from bastion.banks.formats import ImportRecord, Record, RowError
from bastion.banks.taxonomy import normalize_labels, normalize_source
from bastion.errors import BastionError
from bastion.storage.models import LOOKUP_KEY_MAX, BankEntry, BankSignal, lookup_key, utcnow

BATCH = 5000
ERRORS_KEPT = 1000
SQLITE_CACHE_KIB = 256 * 1024
_COPY_ESCAPE = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_PG_LOCK_KEY = 0x62616E6B  # "bank": one advisory lock serialises every bank write on PostgreSQL


def lock_bank_writes(session: Session) -> None:
    """Serialise bank writers; call first in a write transaction (SQLite: takes the write lock now)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
    else:
        session.execute(text("UPDATE banks SET id = id WHERE 0 = 1"))


@dataclass
class ImportResult:
    bank: str
    format: str
    source_name: str
    imported: int = 0
    rejected: int = 0
    skipped: int = 0
    signals: int = 0
    errors: list[RowError] = field(default_factory=list)
    run_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "bank": self.bank,
            "format": self.format,
            "source_name": self.source_name,
            "imported": self.imported,
            "rejected": self.rejected,
            "skipped": self.skipped,
            "signals": self.signals,
            "run_id": self.run_id,
            "errors": [e.to_dict() for e in self.errors],
        }


@dataclass
class _Row:
    record: ImportRecord
    labels: str
    source: str
    note: str
    signals: list[tuple[str, str, str]]  # type, canonical value, lookup key


class _Cache:
    """Memoised checks: label sets, sources and validators repeat across a list."""

    def __init__(self, default_source: str) -> None:
        self.labels: dict[str, str | BastionError] = {}
        self.sources: dict[str | None, str | BastionError] = {}
        self.validators: dict[str, Callable[[str], str] | BastionError] = {}
        self.default_source = default_source

    def label_json(self, labels: dict[str, Any], key: str | None = None) -> str:
        key = "\x00" + key if key is not None else json.dumps(labels, sort_keys=True, default=str)
        found = self.labels.get(key)
        if found is None:
            try:
                found = json.dumps(normalize_labels(labels), ensure_ascii=False, sort_keys=True)
            except BastionError as exc:
                found = exc
            if len(self.labels) < 100_000:
                self.labels[key] = found
        if isinstance(found, BastionError):
            raise found
        return found

    def source(self, value: str | None) -> str:
        return _memo(self.sources, value, lambda: normalize_source(value, self.default_source))

    def validator(self, signal_type: str) -> Callable[[str], str]:
        return _memo(self.validators, signal_type, lambda: registry.get(signal_type).validate)


class _Writer:
    """Inserts entries and their signals with the driver: executemany on SQLite, COPY on PostgreSQL."""

    ENTRY_COLS = (
        "id",
        "bank_id",
        "enabled",
        "content_type",
        "labels",
        "source",
        "note",
        "origin",
        "added_by",
        "added_at",
    )
    SIGNAL_COLS = ("entry_id", "bank_id", "signal_type", "value", "lookup_key", "quality")

    def __init__(self, session: Session, bank_id: int, added_at: datetime, added_by: str) -> None:
        self.session = session
        self.added_by = added_by
        self.conn = session.connection()
        self.dialect = self.conn.dialect
        self.pg = self.dialect.name == "postgresql"
        self.bank_id = bank_id
        self.added_at: Any = added_at
        self._escapes: dict[str, str] = {}
        if not self.pg:
            # A bigger page cache for this connection: the (signal_type, lookup_key) index takes random inserts.
            self.conn.exec_driver_sql(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
            col = BankEntry.__table__.c.added_at
            self.added_at = col.type.dialect_impl(self.dialect).bind_processor(self.dialect)(added_at)
            row = self.conn.exec_driver_sql(
                "SELECT max(coalesce((SELECT max(id) FROM bank_entries), 0), "
                "coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'bank_entries'), 0))"
            ).one()
            self.next_id = int(row[0]) + 1

    def close(self) -> None:
        if not self.pg:
            self.conn.exec_driver_sql("PRAGMA cache_size = -2000")  # SQLite's default again

    def allocate(self, n: int) -> list[int]:
        if self.pg:
            # One block of n ids: nextval per id costs more than the COPY of a row. Every entry insert is under
            # lock_bank_writes, so no other writer takes a value between nextval and setval.
            last = self.conn.exec_driver_sql(
                "SELECT setval(pg_get_serial_sequence('bank_entries', 'id'), "
                "nextval(pg_get_serial_sequence('bank_entries', 'id')) + %(n)s - 1)",
                {"n": n},
            ).scalar_one()
            return list(range(last - n + 1, last + 1))
        ids = list(range(self.next_id, self.next_id + n))
        self.next_id += n
        return ids

    def write(self, rows: list[_Row]) -> tuple[list[int], int]:
        ids = self.allocate(len(rows))
        if self.pg:
            return ids, self._copy(ids, rows)
        entries = [
            (
                eid,
                self.bank_id,
                int(r.record.enabled),
                r.record.content_type,
                r.labels,
                r.source,
                r.note,
                r.record.origin or "",
                self.added_by,
                self.added_at,
            )
            for eid, r in zip(ids, rows, strict=True)
        ]
        signals = [
            (eid, self.bank_id, t, v, k, None) for eid, r in zip(ids, rows, strict=True) for t, v, k in r.signals
        ]
        signals.sort(key=lambda row: row[4])  # index inserts in key order touch fewer pages
        for table, cols, data in (
            ("bank_entries", self.ENTRY_COLS, entries),
            ("bank_signals", self.SIGNAL_COLS, signals),
        ):
            marks = ", ".join("?" for _ in cols)
            self.conn.exec_driver_sql(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks})", data)
        return ids, len(signals)

    def _copy(self, ids: list[int], rows: list[_Row]) -> int:
        """COPY in text format, built here as one block per table (psycopg's per-row write_row is the slow part)."""
        esc = self._escaped
        head = f"{self.bank_id}\t"
        tail = f"\t{esc(self.added_by)}\t{self.added_at.isoformat()}\n"
        entry_lines = []
        signal_lines = []
        null = "\\N"
        for eid, r in zip(ids, rows, strict=True):
            rec = r.record
            entry_lines.append(
                f"{eid}\t{head}{'t' if rec.enabled else 'f'}\t{rec.content_type or null}\t{esc(r.labels)}\t"
                f"{esc(r.source)}\t{esc(r.note)}\t{esc(rec.origin or '')}{tail}"
            )
            for t, v, k in r.signals:
                v, k = v.translate(_COPY_ESCAPE), k.translate(_COPY_ESCAPE)
                signal_lines.append((k, f"{eid}\t{head}{t}\t{v}\t{k}\t{null}\n"))
        signal_lines.sort()  # index inserts in key order touch fewer pages
        raw = self.conn.connection.driver_connection
        with raw.cursor() as cur:
            with cur.copy(f"COPY bank_entries ({', '.join(self.ENTRY_COLS)}) FROM STDIN") as copy:
                copy.write("".join(entry_lines).encode("utf-8"))
            with cur.copy(f"COPY bank_signals ({', '.join(self.SIGNAL_COLS)}) FROM STDIN") as copy:
                copy.write("".join(line for _, line in signal_lines).encode("utf-8"))
        return len(signal_lines)

    def _escaped(self, text: str) -> str:
        found = self._escapes.get(text)
        if found is None:
            found = text.translate(_COPY_ESCAPE)
            if len(self._escapes) < 10_000:
                self._escapes[text] = found
        return found


def _existing(session: Session, bank_id: int, keys: dict[str, set[str]]) -> set[tuple[str, str]]:
    """Which (signal_type, lookup_key) pairs bank ``bank_id`` already holds (including this transaction's rows)."""
    found: set[tuple[str, str]] = set()
    conn = session.connection()
    pg = conn.dialect.name == "postgresql"
    for stype, values in keys.items():
        ordered = sorted(values)
        step = 5000 if pg else 500
        for i in range(0, len(ordered), step):
            chunk = ordered[i : i + step]
            if pg:
                # One array parameter: an IN list of bound values gets a poor generic plan once psycopg prepares it.
                rows = conn.exec_driver_sql(
                    "SELECT lookup_key, bank_id FROM bank_signals "
                    "WHERE signal_type = %(t)s AND lookup_key = ANY(%(k)s)",
                    {"t": stype, "k": chunk},
                )
            else:
                # bank_id is checked below, not in SQL: given "bank_id = ?" SQLite's planner picks the bank_id index
                # and scans the whole bank for every chunk; (signal_type, lookup_key) is the selective one.
                rows = session.execute(
                    select(BankSignal.lookup_key, BankSignal.bank_id).where(
                        BankSignal.signal_type == stype, BankSignal.lookup_key.in_(chunk)
                    )
                )
            found.update((stype, k) for k, b in rows if b == bank_id)
    return found


def _batches(records: Iterable[Record]) -> Iterator[list[Record]]:
    it = iter(records)
    while batch := list(islice(it, BATCH)):
        yield batch


def _drop_duplicates(session: Session, bank_id: int, first_id: int) -> tuple[int, int]:
    """Delete entries from ``first_id`` on whose every signal an older entry of the bank already holds.

    Used after importing into a bank that was empty: one GROUP BY finds repeated keys (usually none) instead of a
    lookup per row. Returns (entries, signals) removed.
    """
    repeated = session.execute(
        select(BankSignal.signal_type, BankSignal.lookup_key)
        .where(BankSignal.bank_id == bank_id)
        .group_by(BankSignal.signal_type, BankSignal.lookup_key)
        .having(func.count() > 1)
    ).all()
    if not repeated:
        return 0, 0
    holders: dict[tuple[str, str], int] = {}  # key -> smallest entry id holding it
    candidates: set[int] = set()
    for stype, key in repeated:
        ids = sorted(
            session.scalars(
                select(BankSignal.entry_id).where(
                    BankSignal.bank_id == bank_id, BankSignal.signal_type == stype, BankSignal.lookup_key == key
                )
            )
        )
        holders[(stype, key)] = ids[0]
        candidates.update(i for i in ids[1:] if i >= first_id)
    doomed: list[int] = []
    for entry_id in sorted(candidates):
        pairs = session.execute(
            select(BankSignal.signal_type, BankSignal.lookup_key).where(BankSignal.entry_id == entry_id)
        ).all()
        if all(holders.get((t, k), entry_id) < entry_id for t, k in pairs):
            doomed.append(entry_id)
    removed_signals = 0
    for i in range(0, len(doomed), 500):
        chunk = doomed[i : i + 500]
        removed_signals += session.execute(delete(BankSignal).where(BankSignal.entry_id.in_(chunk))).rowcount
        session.execute(delete(BankEntry).where(BankEntry.id.in_(chunk)))
    return len(doomed), removed_signals


class _Validator:
    """Turns a batch of records into rows to write: labels, source and signals checked, repeats dropped."""

    def __init__(self, result: ImportResult, default_source: str, note: str, skip_existing: bool) -> None:
        self.result = result
        self.cache = _Cache(default_source)
        self.note = note
        self.skip_existing = skip_existing
        self.skipped = 0

    def reject(self, line: int, code: str, message: str) -> None:
        self.result.rejected += 1
        if len(self.result.errors) < ERRORS_KEPT:
            self.result.errors.append(RowError(line, code, message))

    def batch(self, batch: list[Record]) -> list[_Row]:
        cache = self.cache
        label_cache, validators = cache.labels, cache.validators
        rows: list[_Row] = []
        in_batch: set[tuple[str, str]] = set()
        for rec in batch:
            if type(rec) is not ImportRecord:
                if isinstance(rec, RowError):
                    self.reject(rec.line, rec.code, rec.message)
                else:
                    self.skipped += 1
                continue
            try:
                labels = label_cache.get("\x00" + rec.labels_key) if rec.labels_key is not None else None
                if type(labels) is not str:
                    labels = cache.label_json(rec.labels, rec.labels_key)
                source = cache.source(rec.source)
            except BastionError as exc:
                self.reject(rec.line, exc.code, f"line {rec.line}: {exc.message}")
                continue
            good: list[tuple[str, str, str]] = []
            for line, stype, value in rec.signals:
                validate = validators.get(stype)
                try:
                    if validate is None or not callable(validate):
                        stype = stype.strip().lower()
                        validate = cache.validator(stype)
                    canon = validate(value)
                except BastionError as exc:
                    self.reject(line, exc.code, f"line {line}: {exc.message}")
                    continue
                key = canon if len(canon) <= LOOKUP_KEY_MAX else lookup_key(canon)
                if not any(g[0] == stype and g[2] == key for g in good):
                    good.append((stype, canon, key))
            if not good:
                continue
            if self.skip_existing:
                if len(good) == 1:
                    pair = (good[0][0], good[0][2])
                    if pair in in_batch:
                        self.skipped += 1
                        continue
                    in_batch.add(pair)
                else:
                    pairs = {(t, k) for t, _, k in good}
                    if pairs <= in_batch:
                        self.skipped += 1
                        continue
                    in_batch |= pairs
            rows.append(_Row(rec, labels, source, rec.note if rec.note is not None else self.note, good))
        return rows


@dataclass
class _Stored:
    imported: int = 0
    signals: int = 0
    skipped: int = 0
    first_id: int | None = None


def _store(session: Session, writer: _Writer, bank_id: int, rows: list[_Row], lookup: bool, out: _Stored) -> None:
    """Drop rows the bank already holds (when ``lookup``) and write the rest."""
    if lookup:
        wanted: dict[str, set[str]] = {}
        for r in rows:
            for t, _, k in r.signals:
                wanted.setdefault(t, set()).add(k)
        seen = _existing(session, bank_id, wanted)
        fresh: list[_Row] = []
        for r in rows:
            pairs = {(t, k) for t, _, k in r.signals}
            if pairs <= seen:
                out.skipped += 1
                continue
            seen |= pairs
            fresh.append(r)
        rows = fresh
    if rows:
        ids, written = writer.write(rows)
        out.first_id = ids[0] if out.first_id is None else out.first_id
        out.signals += written
        out.imported += len(rows)


def run_import(
    session: Session,
    bank_id: int,
    records: Iterable[Record],
    result: ImportResult,
    *,
    default_source: str,
    note: str,
    added_by: str,
    skip_existing: bool = True,
    progress: Callable[[ImportResult], None] | None = None,
) -> ImportResult:
    """Validate and insert ``records`` into bank ``bank_id`` within ``session``'s transaction; fills ``result``.

    With ``skip_existing``, an entry whose every signal is already in the bank (or earlier in the file) is skipped:
    looked up per batch when the bank had entries, found with one query at the end when it was empty. Checking
    runs in this thread while a writer thread stores the previous batch.
    """
    writer = _Writer(session, bank_id, utcnow(), added_by)
    was_empty = session.scalar(select(BankEntry.id).where(BankEntry.bank_id == bank_id).limit(1)) is None
    validator = _Validator(result, default_source, note, skip_existing)
    stored = _Stored()
    lookup = skip_existing and not was_empty
    # Reading and checking (this thread) overlap with storing the previous batch (a writer thread, the only user of
    # the session meanwhile): the database works while Python parses. The drivers release the GIL while they wait.
    queue: Queue[list[_Row] | None] = Queue(maxsize=2)
    failure: list[BaseException] = []

    def work() -> None:
        while (rows := queue.get()) is not None:
            if not failure:
                try:
                    _store(session, writer, bank_id, rows, lookup, stored)
                except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
                    failure.append(exc)

    def publish() -> None:
        result.imported, result.signals = stored.imported, stored.signals
        result.skipped = validator.skipped + stored.skipped

    thread = Thread(target=work, name="bastion-import-writer", daemon=True)
    thread.start()
    try:
        for batch in _batches(records):
            if failure:
                break
            queue.put(validator.batch(batch))
            if progress is not None:
                publish()
                progress(result)
    finally:
        queue.put(None)
        thread.join()
    if failure:
        raise failure[0]
    publish()
    if skip_existing and was_empty and stored.first_id is not None:
        entries, signals = _drop_duplicates(session, bank_id, stored.first_id)
        result.imported -= entries
        result.signals -= signals
        result.skipped += entries
    writer.close()
    return result


def _memo(cache: dict[Any, Any], key: Any, compute: Callable[[], Any]) -> Any:
    """``compute()`` once per key; a BastionError is remembered too and raised again on every later call."""
    found = cache.get(key)
    if found is None:
        try:
            found = compute()
        except BastionError as exc:
            found = exc
        cache[key] = found
    if isinstance(found, BastionError):
        raise found
    return found
