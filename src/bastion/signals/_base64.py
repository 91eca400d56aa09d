"""Signal values written as a prefix plus unpadded URL-safe base64 (``text_minhash``, ``text_embedding``)."""

from __future__ import annotations

import base64
import binascii

from bastion.errors import InvalidSignal


def encode(prefix: str, raw: bytes) -> str:
    return prefix + base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode(value: str, *, prefix: str, size: int, signal_type: str, code: str, carries: str) -> bytes:
    """The ``size`` raw bytes after ``prefix``; InvalidSignal ``{code}_bad_prefix`` or ``{code}_bad_length``
    (``carries`` says what the value must hold, for the message)."""
    if not isinstance(value, str) or not value.startswith(prefix):
        raise InvalidSignal(
            f"{signal_type} must start with {prefix!r}, got {str(value)!r:.40}",
            code=f"{code}_bad_prefix",
            signal_type=signal_type,
        )
    body = value[len(prefix) :].strip().rstrip("=")
    try:
        raw = base64.b64decode(body + "=" * (-len(body) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != size:
        raise InvalidSignal(f"{signal_type} must carry {carries} in URL-safe base64", code=f"{code}_bad_length",
                            signal_type=signal_type)
    return raw
