"""Shared code of the cryptographic digest signal types (md5, sha256)."""

from __future__ import annotations

import hashlib
import string
from typing import ClassVar

from bastion.content import Content
from bastion.errors import InvalidSignal
from bastion.signals.base import Signal, SignalType

_HEX = frozenset(string.hexdigits)
_CHUNK = 1 << 20


class DigestSignalType(SignalType):
    hex_length: ClassVar[int]

    @classmethod
    def _hasher(cls) -> hashlib._Hash:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def compute(cls, content: Content) -> list[Signal]:
        h = cls._hasher()
        with content.open() as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
        return [Signal(cls.name, h.hexdigest())]

    @classmethod
    def validate(cls, value: str) -> str:
        v = value.strip().lower() if isinstance(value, str) else ""
        if len(v) != cls.hex_length or not set(v) <= _HEX:
            raise InvalidSignal(
                f"{cls.name} must be {cls.hex_length} hexadecimal characters, got {value!r:.80}",
                signal_type=cls.name,
            )
        return v

    @classmethod
    def invalid_examples(cls) -> list[str]:
        return ["", "xyz", "0" * (cls.hex_length - 1), "g" * cls.hex_length, "0" * (cls.hex_length + 2)]
