"""SHA-256 of a file's bytes: exact copies, collision-resistant."""

from __future__ import annotations

import hashlib

from bastion.content import ContentType
from bastion.signals._digest import DigestSignalType


class SHA256Signal(DigestSignalType):
    name = "sha256"
    content_types = frozenset({ContentType.IMAGE, ContentType.VIDEO, ContentType.PDF, ContentType.TEXT,
                               ContentType.OTHER})
    hex_length = 64

    @classmethod
    def _hasher(cls) -> hashlib._Hash:
        return hashlib.sha256()

    @classmethod
    def examples(cls) -> list[str]:
        return [
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592",
        ]


SIGNAL_TYPE = SHA256Signal
