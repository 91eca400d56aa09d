"""A forum dataset as JSON Lines: one :class:`ExchangedSignal` per line, every field kept.

The simplest lossless form of what an exchange carries, for moving a forum's (or a bank's) hashes between Bastion
instances and into tools that read JSON: each line is an object with ``signal_type``, ``value`` and, when set,
``labels``, ``source_id``, ``contributor``, ``created_at`` (ISO 8601, UTC), ``retracted``, ``incident`` and
``extra``. Reading checks every line (valid JSON, a known signal type, a well-formed value) and raises on the first
bad one with its line number, so an import can refuse a bad file before storing anything.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import IO, Any

from bastion import signals as signal_registry
from bastion.errors import BastionError, InvalidInput
from bastion.exchanges.base import ExchangedSignal
from bastion.storage.models import as_utc

MAX_LINE_CHARS = 1_000_000  # a vPDQ of a long video is large; anything past this is not a hash


def signal_to_dict(sig: ExchangedSignal) -> dict[str, Any]:
    """The JSON object of one signal (defaults left out, so lines stay short)."""
    out: dict[str, Any] = {"signal_type": sig.signal_type, "value": sig.value}
    if sig.labels:
        out["labels"] = dict(sig.labels)
    if sig.source_id:
        out["source_id"] = sig.source_id
    if sig.contributor:
        out["contributor"] = sig.contributor
    if sig.created_at is not None:
        out["created_at"] = as_utc(sig.created_at).isoformat().replace("+00:00", "Z")
    if sig.retracted:
        out["retracted"] = True
    if sig.incident:
        out["incident"] = sig.incident
    if sig.extra:
        out["extra"] = sig.extra
    return out


def signal_from_dict(obj: Any, where: str = "") -> ExchangedSignal:
    """An :class:`ExchangedSignal` from its JSON object, checked (raises ``InvalidInput`` / ``InvalidSignal``)."""
    prefix = f"{where}: " if where else ""
    if not isinstance(obj, dict):
        raise InvalidInput(f"{prefix}expected a JSON object", code="not_an_object")
    stype, value = obj.get("signal_type"), obj.get("value")
    if not isinstance(stype, str) or not isinstance(value, str):
        raise InvalidInput(f"{prefix}'signal_type' and 'value' must be strings", code="missing_field")
    try:
        value = signal_registry.validate(stype, value)
    except BastionError as exc:
        raise type(exc)(f"{prefix}{exc.message}", code=exc.code) from None
    labels = obj.get("labels") or {}
    if not isinstance(labels, dict):
        raise InvalidInput(f"{prefix}'labels' must be an object", code="labels_not_object")
    extra = obj.get("extra") or {}
    if not isinstance(extra, dict):
        raise InvalidInput(f"{prefix}'extra' must be an object", code="extra_not_object")
    created = obj.get("created_at")
    try:
        created_at = as_utc(datetime.fromisoformat(created.replace("Z", "+00:00"))) if created else None
    except (AttributeError, ValueError):
        raise InvalidInput(
            f"{prefix}'created_at' is not an ISO 8601 time: {created!r:.60}", code="invalid_time"
        ) from None
    return ExchangedSignal(
        signal_type=stype,
        value=value,
        labels={str(k): v if isinstance(v, str) else json.dumps(v) for k, v in labels.items()},
        source_id=str(obj.get("source_id") or ""),
        contributor=str(obj["contributor"]) if obj.get("contributor") else None,
        created_at=created_at,
        retracted=obj.get("retracted") is True,
        incident=str(obj["incident"]) if obj.get("incident") else None,
        extra=extra,
    )


def write_jsonl(signals: Iterable[ExchangedSignal], out: IO[str]) -> int:
    """Write one line per signal; returns how many."""
    n = 0
    for sig in signals:
        out.write(json.dumps(signal_to_dict(sig), ensure_ascii=False, sort_keys=True))
        out.write("\n")
        n += 1
    return n


def read_jsonl(stream: IO[str]) -> Iterator[ExchangedSignal]:
    """The signals of a JSON Lines stream, streamed; blank lines are skipped, the first bad line raises."""
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        if len(line) > MAX_LINE_CHARS:
            raise InvalidInput(f"line {number}: longer than {MAX_LINE_CHARS} characters", code="line_too_long")
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"line {number}: not JSON ({exc.msg})", code="malformed_jsonl") from None
        yield signal_from_dict(obj, f"line {number}")


__all__ = ["signal_to_dict", "signal_from_dict", "write_jsonl", "read_jsonl"]
