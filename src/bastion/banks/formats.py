"""Hash-list file formats: read them as a stream of records, write a bank back out in the same shapes.

Formats (``FORMATS``):

``csv``
    Header ``signal_type,signal,labels`` and optionally ``source``, ``note``, ``entry``. ``labels`` is written as a
    JSON object; on import a JSON object or ``key=value;key=value`` is accepted. Consecutive rows with the same
    non-empty ``entry`` value are one entry with several signals (an exported file keeps entries whole this way).
``json`` / ``jsonl``
    The same fields as objects: a JSON array of them, or one per line.
``tat``
    Tech Against Terrorism's TCAP hash list (v2 API: ``{"count", "next", "previous", "checkpoint", "results": [...]}``
    whose results carry ``id, hash_digest, algorithm, ideology, file_type, deleted, created_on, updated_on``; the
    v1 file is a bare array of the same objects). The shape is modelled on TAT's public documentation and the
    ThreatExchange client for it; no real list was available to test against. ``deleted`` rows are skipped. TAT's
    fields are kept raw as ``tat_<field>`` labels and mapped into the taxonomy (``islamist`` -> ``violent_islamist``,
    ``far-right`` -> ``violent_far_right``; a ``group``/``entity`` field, if a list carries one, becomes ``entity``).
    Bastion's own labels ride along in an extra ``bastion_labels`` field, so a TAT-format export round-trips.
``hma``
    Meta's Hasher-Matcher-Actioner (OpenMediaMatch) bank content JSON: an array of objects shaped like its
    ``GET /c/bank/<bank>/content/<id>`` answer -- ``id``, ``disable_until_ts`` (0 disabled, 1 enabled, else a
    time), ``bank``, ``signals`` (``{"pdq": "...", "video_md5": "..."}``), ``metadata`` (``content_id``,
    ``content_uri``, ``json``) and ``note``. Bare ``{"pdq": "..."}`` objects (the body of ``POST .../signal``) are
    accepted too. Labels travel in ``metadata.json.labels``.

Readers never load a whole file: CSV and JSONL go line by line, JSON through ijson's incremental parser. A row that
cannot be read becomes a :class:`RowError` with its line (CSV, JSONL) or record number (JSON formats) and the
import goes on; a file that cannot be parsed at all raises :class:`bastion.errors.ImportFailed`.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

import ijson

from bastion.banks.taxonomy import parse_label_field
from bastion.errors import BastionError, ImportFailed

FORMATS = ("csv", "json", "jsonl", "tat", "hma")
CSV_COLUMNS = ("signal_type", "signal", "labels", "source", "note", "entry")

TAT_IDEOLOGY = {"islamist": "violent_islamist", "far-right": "violent_far_right", "far_right": "violent_far_right"}
TAT_IDEOLOGY_OUT = {"violent_islamist": "islamist", "violent_far_right": "far-right"}
TAT_ENTITY_FIELDS = ("group", "entity", "terrorist_entity", "organisation", "organization")
_FILE_TYPES = {
    "image": ("jpg", "jpeg", "png", "gif", "webp", "bmp", "tif", "tiff"),
    "video": ("mp4", "mkv", "webm", "mov", "avi", "flv", "mpeg", "mpg", "3gp", "m4v"),
    "pdf": ("pdf",),
    "text": ("txt",),
}
FILE_TYPE_CONTENT = {ext: ctype for ctype, exts in _FILE_TYPES.items() for ext in exts}
CONTENT_FILE_TYPE = {"image": "jpg", "video": "mp4", "pdf": "pdf", "text": "txt"}
HMA_TYPES_IN = {"video_md5": "md5"}


@dataclass(slots=True)
class ImportRecord:
    """One entry to import: its signals as (line, signal_type, value) and its raw labels.

    ``labels_key``, when set, is a string standing for ``labels`` (the raw CSV cell) so importers can cache the
    checked labels without serialising them for every row.
    """

    line: int
    signals: list[tuple[int, str, str]]
    labels: dict[str, Any] = field(default_factory=dict)
    source: str | None = None
    note: str | None = None
    origin: str = ""
    content_type: str | None = None
    enabled: bool = True
    labels_key: str | None = None


@dataclass(slots=True)
class RowError:
    line: int
    code: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "code": self.code, "message": self.message}


@dataclass(slots=True)
class RowSkip:
    line: int
    reason: str


@dataclass
class ExportEntry:
    id: int
    labels: dict[str, str]
    source: str
    note: str
    origin: str
    content_type: str | None
    enabled: bool
    added_at: datetime | None
    added_by: str
    signals: list[tuple[str, str]]


Record = ImportRecord | RowError | RowSkip


# -- reading -------------------------------------------------------------------------------------------------------
def read_records(fmt: str, stream: IO[bytes]) -> Iterator[Record]:
    """Records of a hash-list file in format ``fmt``, streamed."""
    readers = {"csv": _read_csv, "jsonl": _read_jsonl, "json": _read_json, "tat": _read_tat, "hma": _read_hma}
    if fmt not in readers:
        raise ImportFailed(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}", code="unknown_format")
    return readers[fmt](stream)


def _text(stream: IO[bytes]) -> io.TextIOWrapper:
    return io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")


def _not_utf8(where: str, exc: UnicodeDecodeError) -> ImportFailed:
    return ImportFailed(f"the file is not UTF-8 text ({where}: {exc.reason})", code="not_utf8")


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _row_fields(line: int, obj: dict[str, Any]) -> ImportRecord | RowError:
    """The shared csv/json/jsonl row: signal_type, signal, labels, source, note."""
    stype, signal = _str(obj.get("signal_type")).strip(), _str(obj.get("signal")).strip()
    if not stype or not signal:
        missing = "signal_type" if not stype else "signal"
        return RowError(line, "missing_field", f"line {line}: '{missing}' is empty")
    labels = obj.get("labels")
    try:
        if isinstance(labels, str):
            labels = parse_label_field(labels)
        elif labels is None:
            labels = {}
        elif not isinstance(labels, dict):
            return RowError(line, "labels_not_object", f"line {line}: labels must be an object")
    except BastionError as exc:
        return RowError(line, exc.code, f"line {line}: {exc.message}")
    return ImportRecord(
        line,
        [(line, stype, signal)],
        labels,
        source=_str(obj.get("source")).strip() or None,
        note=_str(obj.get("note")) or None,
    )


def _grouped(rows: Iterator[tuple[ImportRecord | RowError, str]]) -> Iterator[Record]:
    """Merge consecutive records that share a non-empty ``entry`` value into one record."""
    pending: ImportRecord | None = None
    pending_key = ""
    for rec, key in rows:
        if isinstance(rec, ImportRecord) and pending is not None and key and key == pending_key:
            pending.signals.extend(rec.signals)
            continue
        if pending is not None:
            yield pending
            pending = None
        if isinstance(rec, ImportRecord):
            pending, pending_key = rec, key
        else:
            yield rec
    if pending is not None:
        yield pending


def _read_csv(stream: IO[bytes]) -> Iterator[Record]:
    text = _text(stream)
    reader = csv.reader(text)
    try:
        header = next(reader, None)
    except UnicodeDecodeError as exc:
        raise _not_utf8("header", exc) from None
    except csv.Error as exc:
        raise ImportFailed(f"line 1: not CSV: {exc}", code="malformed_csv") from None
    if header is None:
        raise ImportFailed("the file is empty: expected a header signal_type,signal,labels", code="empty_file")
    columns = [h.strip().lower() for h in header]
    unknown = [c for c in columns if c not in CSV_COLUMNS]
    if "signal_type" not in columns or "signal" not in columns or unknown:
        raise ImportFailed(
            f"line 1: the header must name signal_type and signal, optionally {', '.join(CSV_COLUMNS[2:])}; "
            f"got {', '.join(columns) or 'nothing'}",
            code="bad_header",
        )

    n_cols = len(columns)
    at = {c: i for i, c in enumerate(columns)}
    i_type, i_signal = at["signal_type"], at["signal"]
    i_labels, i_source, i_note, i_entry = (at.get(c) for c in ("labels", "source", "note", "entry"))
    parsed_labels: dict[str, dict[str, Any] | BastionError] = {}

    def labels_of(cell: str) -> dict[str, Any]:
        found = parsed_labels.get(cell)
        if found is None:
            try:
                found = parse_label_field(cell)
            except BastionError as exc:
                found = exc
            if len(parsed_labels) < 100_000:
                parsed_labels[cell] = found
        if isinstance(found, BastionError):
            raise found
        return found

    def rows() -> Iterator[tuple[ImportRecord | RowError, str]]:
        while True:
            try:
                values = next(reader)
            except StopIteration:
                return
            except UnicodeDecodeError as exc:
                raise _not_utf8(f"after line {reader.line_num}", exc) from None
            except csv.Error as exc:
                yield RowError(reader.line_num, "malformed_csv", f"line {reader.line_num}: {exc}"), ""
                continue
            line = reader.line_num
            if len(values) != n_cols:
                if not any(v.strip() for v in values):
                    continue
                if len(values) > n_cols:
                    yield (
                        RowError(line, "too_many_fields", f"line {line}: {len(values)} fields, header has {n_cols}"),
                        "",
                    )
                    continue
                values = values + [""] * (n_cols - len(values))
            stype, signal = values[i_type].strip(), values[i_signal].strip()
            if not stype or not signal:
                if not any(v.strip() for v in values):
                    continue
                missing = "signal_type" if not stype else "signal"
                yield RowError(line, "missing_field", f"line {line}: '{missing}' is empty"), ""
                continue
            cell = values[i_labels] if i_labels is not None else ""
            try:
                labels = labels_of(cell)
            except BastionError as exc:
                yield RowError(line, exc.code, f"line {line}: {exc.message}"), ""
                continue
            rec = ImportRecord(line, [(line, stype, signal)], labels, labels_key=cell)
            if i_source is not None:
                rec.source = values[i_source].strip() or None
            if i_note is not None:
                rec.note = values[i_note] or None
            yield rec, (values[i_entry].strip() if i_entry is not None else "")

    if i_entry is None:
        return (rec for rec, _ in rows())
    return _grouped(rows())


def _read_jsonl(stream: IO[bytes]) -> Iterator[Record]:
    def rows() -> Iterator[tuple[ImportRecord | RowError, str]]:
        decoder = codecs.getincrementaldecoder("utf-8-sig")()
        for line_no, raw in enumerate(stream, start=1):
            try:
                line = decoder.decode(raw)
            except UnicodeDecodeError as exc:
                raise _not_utf8(f"line {line_no}", exc) from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                yield RowError(line_no, "malformed_json", f"line {line_no}: not JSON: {exc.msg}"), ""
                continue
            if not isinstance(obj, dict):
                yield RowError(line_no, "not_an_object", f"line {line_no}: expected a JSON object"), ""
                continue
            yield _row_fields(line_no, obj), _str(obj.get("entry")).strip()

    return _grouped(rows())


def _json_items(stream: IO[bytes], object_prefix: str | None = None) -> Iterator[tuple[int, Any]]:
    """(record number, item) of a top-level JSON array, or of ``object_prefix`` inside a top-level object."""
    buffered = io.BufferedReader(stream) if not hasattr(stream, "peek") else stream
    head = buffered.peek(64)[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head[:1] == b"[":
        prefix = "item"
    elif head[:1] == b"{" and object_prefix:
        prefix = object_prefix
    elif head[:1] == b"{":
        prefix = ""
    elif not head:
        raise ImportFailed("the file is empty", code="empty_file")
    else:
        raise ImportFailed("not JSON: expected an array or an object", code="malformed_json")
    number = 0
    try:
        for number, item in enumerate(ijson.items(buffered, prefix, use_float=True), start=1):  # noqa: B007
            yield number, item
    except ijson.JSONError as exc:
        raise ImportFailed(f"not valid JSON after record {number}: {exc}", code="malformed_json") from None
    except UnicodeDecodeError as exc:
        raise _not_utf8(f"after record {number}", exc) from None


def _read_json(stream: IO[bytes]) -> Iterator[Record]:
    def rows() -> Iterator[tuple[ImportRecord | RowError, str]]:
        for number, obj in _json_items(stream, "entries.item"):
            if not isinstance(obj, dict):
                yield RowError(number, "not_an_object", f"record {number}: expected a JSON object"), ""
                continue
            rec = _row_fields(number, obj)
            if isinstance(rec, RowError):
                rec.message = rec.message.replace(f"line {number}", f"record {number}", 1)
            yield rec, _str(obj.get("entry")).strip()

    return _grouped(rows())


def _read_tat(stream: IO[bytes]) -> Iterator[Record]:
    for number, obj in _json_items(stream, "results.item"):
        if not isinstance(obj, dict):
            yield RowError(number, "not_an_object", f"record {number}: expected a JSON object")
            continue
        digest, algorithm = _str(obj.get("hash_digest")).strip(), _str(obj.get("algorithm")).strip().lower()
        if not digest or not algorithm:
            missing = "hash_digest" if not digest else "algorithm"
            yield RowError(number, "missing_field", f"record {number}: '{missing}' is empty")
            continue
        if obj.get("deleted") is True or _str(obj.get("deleted")).lower() == "true":
            yield RowSkip(number, "withdrawn by TAT (deleted)")
            continue
        own = obj.get("bastion_labels")
        if isinstance(own, dict):  # written by Bastion: its labels already hold the raw TAT fields
            labels: dict[str, Any] = dict(own)
        else:
            labels = {
                f"tat_{k}": v
                for k, v in obj.items()
                if k not in ("hash_digest", "algorithm", "deleted") and v not in (None, "")
            }
            ideology = TAT_IDEOLOGY.get(_str(obj.get("ideology")).strip().lower())
            if ideology:
                labels["ideology"] = ideology
            group = next((_str(obj[k]) for k in TAT_ENTITY_FIELDS if _str(obj.get(k)).strip()), "")
            if group:
                labels["entity"] = group
        file_type = _str(obj.get("file_type")).strip().lower().lstrip(".")
        yield ImportRecord(
            number,
            [(number, algorithm, digest)],
            labels,
            origin=f"tat:{obj['id']}" if obj.get("id") not in (None, "") else "",
            content_type=FILE_TYPE_CONTENT.get(file_type),
        )


def _hma_enabled(value: Any) -> bool:
    if value is None:
        return True
    try:
        ts = int(value)
    except (TypeError, ValueError):
        return True
    return ts == 1 or (ts > 1 and ts <= time.time())


def _read_hma(stream: IO[bytes]) -> Iterator[Record]:
    for number, obj in _json_items(stream, "entries.item"):
        if not isinstance(obj, dict):
            yield RowError(number, "not_an_object", f"record {number}: expected a JSON object")
            continue
        signals = obj.get("signals")
        if signals is None and obj and all(isinstance(v, str) for v in obj.values()):
            signals, obj = obj, {}
        if not isinstance(signals, dict) or not signals:
            yield RowError(number, "no_signals", f"record {number}: 'signals' must be a non-empty object")
            continue
        metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        extra = metadata.get("json") if isinstance(metadata.get("json"), dict) else {}
        bank = obj.get("bank")
        bank_name = bank.get("name") if isinstance(bank, dict) else bank
        if isinstance(extra.get("labels"), dict):  # written by Bastion: its labels are the whole story
            labels: dict[str, Any] = dict(extra["labels"])
        else:
            labels = {
                f"hma_{k}": v
                for k, v in (
                    ("id", obj.get("id")),
                    ("bank", bank_name),
                    ("content_id", metadata.get("content_id")),
                    ("content_uri", metadata.get("content_uri")),
                    ("original_media_uri", obj.get("original_media_uri")),
                )
                if v not in (None, "")
            }
            if extra:
                labels["hma_json"] = extra
        origin = _str(metadata.get("content_uri") or obj.get("original_media_uri"))
        if not origin and obj.get("id") is not None:
            origin = f"hma:{bank_name or ''}/{obj['id']}"
        yield ImportRecord(
            number,
            [(number, HMA_TYPES_IN.get(str(t).lower(), str(t).lower()), _str(v)) for t, v in signals.items()],
            labels,
            source=_str(extra.get("source")) or None,
            note=_str(obj.get("note")) or None,
            origin=origin,
            content_type=_str(extra.get("content_type")) or None,
            enabled=_hma_enabled(obj.get("disable_until_ts")),
        )


# -- writing -------------------------------------------------------------------------------------------------------
def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)


def _flat(entries: Iterable[ExportEntry]) -> Iterator[dict[str, Any]]:
    for e in entries:
        for stype, value in e.signals:
            yield {
                "signal_type": stype,
                "signal": value,
                "labels": e.labels,
                "source": e.source,
                "note": e.note,
                "entry": str(e.id),
            }


def write_export(
    fmt: str, entries: Iterable[ExportEntry], out: IO[str], *, bank_name: str = "", bank_enabled: bool = True
) -> int:
    """Write ``entries`` to ``out`` in ``fmt``; returns the number of signals (rows) written."""
    if fmt not in FORMATS:
        raise ImportFailed(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}", code="unknown_format")
    count = 0
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for row in _flat(entries):
            writer.writerow(
                [row["signal_type"], row["signal"], _dumps(row["labels"]), row["source"], row["note"], row["entry"]]
            )
            count += 1
    elif fmt == "jsonl":
        for row in _flat(entries):
            out.write(_dumps(row) + "\n")
            count += 1
    elif fmt == "json":
        out.write("[")
        for row in _flat(entries):
            out.write(("\n" if count == 0 else ",\n") + _dumps(row))
            count += 1
        out.write("\n]\n")
    elif fmt == "tat":
        count = _write_tat(entries, out)
    else:
        count = _write_hma(entries, out, bank_name, bank_enabled)
    return count


def _epoch(value: datetime | None) -> float:
    if value is None:
        return 0.0
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def _write_tat(entries: Iterable[ExportEntry], out: IO[str]) -> int:
    count, last = 0, ""
    out.write('{"results": [')
    for e in entries:
        labels = e.labels
        file_type = labels.get("tat_file_type") or CONTENT_FILE_TYPE.get(e.content_type or "", "")
        for stype, value in e.signals:
            tat_id: Any = labels.get("tat_id", e.id)
            if isinstance(tat_id, str) and tat_id.isdigit():
                tat_id = int(tat_id)
            row = {
                "id": tat_id,
                "hash_digest": value,
                "algorithm": stype.upper(),
                "ideology": TAT_IDEOLOGY_OUT.get(labels.get("ideology", ""), labels.get("tat_ideology", "")),
                "file_type": file_type,
                "deleted": not e.enabled,
                "created_on": labels.get("tat_created_on") or (e.added_at.isoformat() if e.added_at else ""),
                "updated_on": _epoch(e.added_at),
                "bastion_labels": labels,
            }
            if labels.get("entity"):
                row["group"] = labels["entity"]
            out.write(("\n" if count == 0 else ",\n") + _dumps(row))
            count += 1
            last = f"{row['updated_on']},{row['id']}"
    out.write(f'\n], "count": {count}, "next": null, "previous": null, "checkpoint": {json.dumps(last)}}}\n')
    return count


def _write_hma(entries: Iterable[ExportEntry], out: IO[str], bank_name: str, bank_enabled: bool) -> int:
    count = 0
    out.write("[")
    for n, e in enumerate(entries):
        signals: dict[str, str] = {}
        for stype, value in e.signals:
            name = "video_md5" if stype == "md5" and e.content_type == "video" else stype
            signals.setdefault(name, value)
        count += len(signals)
        meta_json = {"labels": e.labels, "source": e.source}
        if e.content_type:
            meta_json["content_type"] = e.content_type
        row = {
            "id": e.id,
            "disable_until_ts": 1 if e.enabled else 0,
            "original_media_uri": None,
            "bank": {"name": bank_name, "matching_enabled_ratio": 1.0 if bank_enabled else 0.0},
            "signals": signals,
            "metadata": {"content_id": str(e.id), "content_uri": e.origin or None, "json": meta_json},
            "note": e.note or None,
        }
        out.write(("\n" if n == 0 else ",\n") + _dumps(row))
    out.write("\n]\n")
    return count
