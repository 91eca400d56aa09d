"""The contract every signal type implements.

A signal type turns content into short strings (signals) that can be stored, exchanged with other platforms and
compared without the content itself. Each type is one module in this package and one row in the registry in
``bastion.signals.__init__``. Its ``name`` is a storage and exchange key: never rename one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from bastion.content import Content, ContentType


@dataclass(frozen=True)
class Signal:
    """One signal computed from content: its type's name, its canonical string form and optional metadata."""

    type: str
    value: str
    quality: int | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON form; ``meta`` keys starting with "_" are internal (e.g. PDQ's dihedral variants) and left out."""
        out: dict[str, Any] = {"type": self.type, "value": self.value}
        if self.quality is not None:
            out["quality"] = self.quality
        out.update({k: v for k, v in self.meta.items() if not k.startswith("_")})
        return out


class SignalType(ABC):
    """Base class of signal types. Subclasses are stateless; methods are class methods."""

    #: storage and exchange key, e.g. "pdq"; never renamed
    name: ClassVar[str]
    #: which content types this signal is computed for
    content_types: ClassVar[frozenset[ContentType]]
    #: True when two signals are compared by equality alone (md5, sha256, url, text exact)
    exact: ClassVar[bool] = True

    @classmethod
    @abstractmethod
    def compute(cls, content: Content) -> list[Signal]:
        """Signals for this content (usually one; empty when the content yields none, e.g. a low-quality PDQ).

        Raises a :class:`bastion.errors.BastionError` subclass with a code when the content cannot be read.
        """

    @classmethod
    @abstractmethod
    def validate(cls, value: str) -> str:
        """The canonical form of a signal string; raises ``InvalidSignal`` with a precise message if malformed."""

    @classmethod
    def distance(cls, a: str, b: str) -> float:
        """Distance between two canonical signals; 0 means identical. Exact types: 0 or 1."""
        return 0.0 if a == b else 1.0

    @classmethod
    def prepare(cls, value: str) -> Any:
        """The form :meth:`distance_prepared` compares; matchers keep bank values prepared (e.g. decoded TMK)."""
        return value

    @classmethod
    def distance_prepared(cls, a: Any, b: Any) -> float:
        """:meth:`distance` over two :meth:`prepare` results (the default: prepared values are the strings)."""
        return cls.distance(a, b)

    @classmethod
    def is_match(cls, distance: float) -> bool:
        """Whether a distance from :meth:`distance` is a match under the current settings."""
        return distance == 0

    @classmethod
    def usable(cls, signal: Signal) -> bool:
        """Whether a computed signal is good enough to match or bank (PDQ: quality at or above the minimum)."""
        return True

    @classmethod
    @abstractmethod
    def examples(cls) -> list[str]:
        """Valid signal strings, for contract tests and documentation."""

    @classmethod
    def invalid_examples(cls) -> list[str]:
        """Strings :meth:`validate` must reject."""
        return ["", "   "]
