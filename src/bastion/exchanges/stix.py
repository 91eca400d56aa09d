"""A forum dataset as STIX 2.1: one ``indicator`` per hash, in a ``bundle``, built and checked by ``stix2``.

Threat-intelligence platforms (MISP, OpenCTI, TAXII servers) speak STIX; a forum that exports to it can feed them,
and one that imports it can take their hash indicators. The mapping:

========================  =====================================================================================
Bastion                   STIX 2.1 indicator
========================  =====================================================================================
``md5``                   ``pattern: [file:hashes.MD5 = '…']``
``sha256``                ``pattern: [file:hashes.'SHA-256' = '…']``
``pdq``                   ``pattern: [file:hashes.PDQ = '…']`` (an open-vocabulary hash name)
``url``                   ``pattern: [url:value = '…']``
any other type            ``pattern: [x-bastion-signal:signal_type = '…' AND x-bastion-signal:value = '…']``
labels                    ``x_bastion_labels`` (every label), and the taxonomy ones (category, ideology, entity,
                          source) also as standard ``labels`` ``key:value`` strings
retracted                 ``revoked: true``
created_at                ``valid_from`` (and ``created``)
source id, contributor,   ``x_bastion_source_id``, ``x_bastion_contributor``, ``x_bastion_incident``,
incident, extra           ``x_bastion_extra``; ``x_bastion_signal_type`` / ``x_bastion_value`` repeat the pattern's
                          type and value exactly, so Bastion reads its own exports without parsing patterns
========================  =====================================================================================

Ids are UUIDv5 of (type, value, source id), so exporting the same dataset twice gives the same indicators. Export
streams (the bundle is written object by object, each built by ``stix2`` so its pattern is validated); import reads
``objects`` incrementally (ijson) and parses each with ``stix2.parse``. Indicators from other tools are read from
their pattern when it is one of the shapes above (``SHA256``/``SHA-256``, ``MD5``, ``PDQ``, ``url:value``); other
objects (identities, relationships...) are skipped, an indicator with another pattern is an error.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import IO, Any

import ijson
import stix2
from stix2.exceptions import STIXError

from bastion import signals as signal_registry
from bastion.errors import BastionError, InvalidInput
from bastion.exchanges.base import ExchangedSignal
from bastion.storage.models import as_utc

#: uuid5 namespace of Bastion's indicator ids
NAMESPACE = uuid.UUID("5b0c1d7e-0f4c-4a55-9a43-6b6173746f6e")
TAXONOMY_KEYS = ("category", "ideology", "entity", "source")
_HASH_NAMES = {"md5": "MD5", "sha256": "'SHA-256'", "pdq": "PDQ"}
_HASH_TYPES = {"md5": "md5", "sha-256": "sha256", "sha256": "sha256", "pdq": "pdq"}
_LITERAL = r"'((?:[^'\\]|\\.)*)'"
_FILE_HASH = re.compile(r"^\[\s*file:hashes\.(?:'([^']+)'|([A-Za-z0-9_-]+))\s*=\s*" + _LITERAL + r"\s*\]$")
_URL = re.compile(r"^\[\s*url:value\s*=\s*" + _LITERAL + r"\s*\]$")


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _unquote(literal: str) -> str:
    return re.sub(r"\\(.)", r"\1", literal)


def pattern_of(signal_type: str, value: str) -> str:
    """The STIX pattern for one signal (see the module table)."""
    if signal_type in _HASH_NAMES:
        return f"[file:hashes.{_HASH_NAMES[signal_type]} = {_quote(value)}]"
    if signal_type == "url":
        return f"[url:value = {_quote(value)}]"
    return f"[x-bastion-signal:signal_type = {_quote(signal_type)} AND x-bastion-signal:value = {_quote(value)}]"


def indicator_id(sig: ExchangedSignal) -> str:
    return "indicator--" + str(uuid.uuid5(NAMESPACE, f"{sig.signal_type}\n{sig.value}\n{sig.source_id}"))


def to_indicator(sig: ExchangedSignal, now: datetime | None = None) -> stix2.v21.Indicator:
    """One signal as a validated ``stix2`` Indicator."""
    when = as_utc(sig.created_at) if sig.created_at else (now or datetime.now(UTC))
    props: dict[str, Any] = {
        "id": indicator_id(sig),
        "created": when,
        "modified": when,
        "valid_from": when,
        "pattern": pattern_of(sig.signal_type, sig.value),
        "pattern_type": "stix",
        "pattern_version": "2.1",
        "indicator_types": ["malicious-activity"],
        "name": f"{sig.signal_type} hash",
        "x_bastion_signal_type": sig.signal_type,
        "x_bastion_value": sig.value,
    }
    standard = [f"{k}:{sig.labels[k]}" for k in TAXONOMY_KEYS if sig.labels.get(k)]
    if standard:
        props["labels"] = standard
    if sig.labels:
        props["x_bastion_labels"] = dict(sig.labels)
    if sig.retracted:
        props["revoked"] = True
    for key, value in (("source_id", sig.source_id), ("contributor", sig.contributor), ("incident", sig.incident)):
        if value:
            props[f"x_bastion_{key}"] = value
    if sig.extra:
        props["x_bastion_extra"] = dict(sig.extra)
    try:
        return stix2.v21.Indicator(allow_custom=True, **props)
    except STIXError as exc:  # e.g. an md5 that is not 32 hex characters: stix2 checks hash values
        raise InvalidInput(
            f"cannot express {sig.signal_type} {sig.value!r:.80} in STIX: {exc}", code="stix_invalid"
        ) from None


def write_stix(signals: Iterable[ExchangedSignal], out: IO[str], *, bundle_id: str | None = None) -> int:
    """Write a STIX 2.1 bundle of one indicator per signal, streamed; returns how many."""
    bundle_id = bundle_id or f"bundle--{uuid.uuid4()}"
    out.write('{"type": "bundle", "id": ' + json.dumps(bundle_id) + ', "objects": [')
    n = 0
    now = datetime.now(UTC)
    for sig in signals:
        out.write(",\n" if n else "\n")
        out.write(to_indicator(sig, now).serialize())
        n += 1
    out.write("\n]}\n")
    return n


def from_indicator(obj: Any, where: str = "") -> ExchangedSignal:
    """An :class:`ExchangedSignal` from a parsed ``stix2`` Indicator (Bastion's own, or another tool's)."""
    prefix = f"{where}: " if where else ""
    stype = obj.get("x_bastion_signal_type")
    value = obj.get("x_bastion_value")
    if not (isinstance(stype, str) and isinstance(value, str)):
        stype, value = _from_pattern(obj.get("pattern", ""), prefix)
    try:
        value = signal_registry.validate(stype, value)
    except BastionError as exc:
        raise type(exc)(f"{prefix}{exc.message}", code=exc.code) from None
    labels = dict(obj.get("x_bastion_labels") or {})
    if not labels:  # another tool's indicator: its standard labels, as they are
        for text in obj.get("labels") or []:
            key, sep, val = str(text).partition(":")
            if sep and key.strip().lower() in TAXONOMY_KEYS:
                labels[key.strip().lower()] = val.strip()
            else:
                labels.setdefault("stix_labels", "")
                labels["stix_labels"] = ",".join(filter(None, [labels["stix_labels"], str(text)]))
    valid_from = obj.get("valid_from")
    created = as_utc(valid_from) if isinstance(valid_from, datetime) else None
    extra = dict(obj.get("x_bastion_extra") or {})
    if "x_bastion_source_id" not in obj:
        extra.setdefault("stix_id", obj.get("id"))
    return ExchangedSignal(
        signal_type=stype,
        value=value,
        labels={str(k): v if isinstance(v, str) else json.dumps(v) for k, v in labels.items()},
        source_id=str(obj.get("x_bastion_source_id") or obj.get("id") or ""),
        contributor=obj.get("x_bastion_contributor"),
        created_at=created,
        retracted=bool(obj.get("revoked", False)),
        incident=obj.get("x_bastion_incident"),
        extra=extra,
    )


def _from_pattern(pattern: str, prefix: str) -> tuple[str, str]:
    m = _FILE_HASH.match(pattern.strip())
    if m:
        name = (m.group(1) or m.group(2)).lower()
        if name in _HASH_TYPES:
            return _HASH_TYPES[name], _unquote(m.group(3))
    m = _URL.match(pattern.strip())
    if m:
        return "url", _unquote(m.group(1))
    raise InvalidInput(
        f"{prefix}pattern {pattern!r:.120} is not a hash or URL Bastion can match", code="stix_unsupported_pattern"
    )


def read_stix(stream: IO[bytes]) -> Iterator[ExchangedSignal]:
    """The indicators of a STIX 2.1 bundle (or a bare JSON array of objects), streamed; each is validated by
    ``stix2.parse``. Objects that are not indicators are skipped; the first bad indicator raises."""
    head = stream.peek(64)[:64] if hasattr(stream, "peek") else b""
    prefix = "item" if head.lstrip().startswith(b"[") else "objects.item"
    number = 0
    try:
        for number, raw in enumerate(ijson.items(stream, prefix), start=1):
            if not isinstance(raw, dict) or raw.get("type") != "indicator":
                continue
            where = f"object {number}"
            try:
                obj = stix2.parse(_plain(raw), allow_custom=True, version="2.1")
            except (STIXError, ValueError) as exc:
                raise InvalidInput(f"{where}: not a valid STIX 2.1 indicator: {exc}", code="stix_invalid") from None
            yield from_indicator(obj, where)
    except ijson.JSONError as exc:
        raise InvalidInput(f"not valid JSON after object {number}: {exc}", code="malformed_json") from None


def _plain(value: Any) -> Any:
    """ijson yields Decimal for numbers; stix2 wants plain JSON types."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if type(value).__name__ == "Decimal":
        return int(value) if value == int(value) else float(value)
    return value


__all__ = ["write_stix", "read_stix", "to_indicator", "from_indicator", "pattern_of", "indicator_id"]
