"""Hash-list files behind :class:`bastion.exchanges.base.Exchange`: a file is an exchange that never changes.

Formats (``FILE_FORMATS``): ``te-csv`` and ``te-signals`` (ThreatExchange, :mod:`bastion.exchanges.threatexchange`),
``tat`` and ``hma`` (Tech Against Terrorism and HMA bank files, read by :mod:`bastion.banks.formats`), ``jsonl``
(:mod:`bastion.exchanges.jsonl`) and ``stix`` (:mod:`bastion.exchanges.stix`).

:func:`read_signals` turns any of them into :class:`ExchangedSignal` (labels as the source gave them: TAT's fields
as ``tat_*``, HMA's as ``hma_*``, TE's as ``te_*``); :class:`FileExchange` pages through them with the record offset
as cursor, so a file and an API go through the same sync and import code. Rows a reader rejects are collected in
``rejected`` (with their line and code) instead of stopping the file, as bank imports do.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from bastion.banks import formats
from bastion.errors import BastionError, InvalidInput, UnreadableFile
from bastion.exchanges import jsonl, stix, threatexchange
from bastion.exchanges.base import ExchangedSignal, Feedback, FetchPage, PushResult

KIND = "file"
FILE_FORMATS = ("te-csv", "te-signals", "tat", "hma", "jsonl", "stix")


def read_signals(
    fmt: str, stream: IO[bytes], *, rejected: list[dict[str, Any]] | None = None, default_type: str | None = None
) -> Iterator[ExchangedSignal]:
    """The signals of a file in ``fmt``. TAT/HMA rows that cannot be read go to ``rejected`` (when given, else they
    raise); the TE, JSONL and STIX readers raise on the first bad row."""
    if fmt == "te-csv":
        yield from threatexchange.read_te_csv(_text(stream))
    elif fmt == "te-signals":
        yield from threatexchange.read_te_signals(_text(stream), default_type)
    elif fmt == "jsonl":
        yield from jsonl.read_jsonl(_text(stream))
    elif fmt == "stix":
        yield from stix.read_stix(stream)
    elif fmt in ("tat", "hma"):
        yield from _from_records(fmt, formats.read_records(fmt, stream), rejected)
    else:
        raise InvalidInput(
            f"unknown exchange file format {fmt!r}; known: {', '.join(FILE_FORMATS)}", code="unknown_format"
        )


def _text(stream: IO[bytes]) -> io.TextIOWrapper:
    return io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")


def _from_records(
    fmt: str, records: Iterator[formats.Record], rejected: list[dict[str, Any]] | None
) -> Iterator[ExchangedSignal]:
    from bastion import signals as signal_registry

    for rec in records:
        if isinstance(rec, formats.RowSkip):
            continue
        if isinstance(rec, formats.RowError):
            if rejected is None:
                raise InvalidInput(rec.message, code=rec.code)
            rejected.append(rec.to_dict())
            continue
        labels = {str(k): v if isinstance(v, str) else _json(v) for k, v in rec.labels.items()}
        if fmt == "tat":
            labels.setdefault("source", "tech_against_terrorism")
        origin = rec.origin or f"{fmt}:line{rec.line}"
        for line, stype, value in rec.signals:
            stype = formats.HMA_TYPES_IN.get(stype, stype) if fmt == "hma" else stype
            try:
                canonical = signal_registry.validate(stype, value)
            except BastionError as exc:
                if rejected is None:
                    raise
                rejected.append({"line": line, "code": exc.code, "message": f"record {line}: {exc.message}"})
                continue
            yield ExchangedSignal(
                stype,
                canonical,
                labels,
                source_id=f"{origin}#{stype}",
                retracted=not rec.enabled,
                extra={"content_type": rec.content_type} if rec.content_type else {},
            )


def _json(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True)


class FileExchange:
    """A hash-list file read as an exchange; the cursor is how many signals were already handed out."""

    kind = KIND

    def __init__(self, name: str, path: str | Path, fmt: str, *, default_type: str | None = None) -> None:
        if fmt not in FILE_FORMATS:
            raise InvalidInput(
                f"unknown exchange file format {fmt!r}; known: {', '.join(FILE_FORMATS)}", code="unknown_format"
            )
        self.name = name
        self.path = Path(path)
        self.fmt = fmt
        self.default_type = default_type
        self.rejected: list[dict[str, Any]] = []
        self._signals: list[ExchangedSignal] | None = None

    @property
    def can_push(self) -> bool:
        return False

    def _all(self) -> list[ExchangedSignal]:
        if self._signals is None:
            try:
                fh = open(self.path, "rb")  # noqa: SIM115 - closed below
            except FileNotFoundError:
                raise UnreadableFile(f"{self.path}: no such file", code="file_not_found") from None
            except OSError as exc:
                raise UnreadableFile(f"{self.path}: {exc.strerror or exc}") from None
            with fh:
                self._signals = list(read_signals(self.fmt, fh, rejected=self.rejected, default_type=self.default_type))
        return self._signals

    def fetch(self, cursor: str | None, limit: int = 1000) -> FetchPage:
        start = 0
        if cursor:
            if not cursor.isdigit():
                raise InvalidInput(f"not a cursor of a file exchange: {cursor!r:.80}", code="invalid_cursor")
            start = int(cursor)
        items = self._all()
        page = items[start : start + limit]
        end = start + len(page)
        return FetchPage(page, str(end), end < len(items))

    def push(self, signals: Sequence[ExchangedSignal]) -> PushResult:
        raise InvalidInput("a file exchange is read only", code="exchange_read_only")

    def send_feedback(self, feedback: Sequence[Feedback]) -> int:
        return 0

    def close(self) -> None:
        return None


__all__ = ["FileExchange", "read_signals", "FILE_FORMATS", "KIND"]
