"""MD5 of a file's bytes: the exact-copy hash every exchange (GIFCT, ThreatExchange, TAT) still carries."""

from __future__ import annotations

import hashlib

from bastion.content import Content, ContentType
from bastion.signals._digest import DigestSignalType


class MD5Signal(DigestSignalType):
    name = "md5"
    content_types = frozenset({ContentType.IMAGE, ContentType.VIDEO, ContentType.PDF, ContentType.TEXT,
                               ContentType.OTHER})
    hex_length = 32

    @classmethod
    def _hasher(cls) -> hashlib._Hash:
        return hashlib.md5(usedforsecurity=False)

    @classmethod
    def examples(cls) -> list[str]:
        return ["d41d8cd98f00b204e9800998ecf8427e", "9e107d9d372bb6826bd81d3542a419d6"]


SIGNAL_TYPE = MD5Signal
__all__ = ["MD5Signal", "SIGNAL_TYPE", "Content"]
