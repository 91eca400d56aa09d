"""The one interface every hash exchange sits behind.

An *exchange* is a source (and sometimes a destination) of hashes with labels that an organisation trusts enough to
match against: an industry forum's hub (``bastion.forum``), ThreatExchange, the Tech Against Terrorism hash list,
a file in one of their formats. Whatever the source, a member's sync loop does the same four things, so each kind
of exchange implements :class:`Exchange` and the loop (and the CLI, and the tests) never care which kind it is:

``fetch(cursor, limit)``
    the next page of what changed since ``cursor`` (an opaque string the exchange made; ``None`` means from the
    beginning). The caller stores a page's signals and the page's ``next_cursor`` *in one transaction*, so a crash
    between pages re-fetches at most one page and storing a page twice changes nothing (idempotent by
    ``(exchange, source_id, signal_type, value)``).
``push(signals)``
    contribute hashes the organisation confirmed and chose to share (exchanges that accept contributions only).
``send_feedback(feedback)``
    tell the exchange what the organisation's own review concluded about one of its hashes.

Signals are exchanged as :class:`ExchangedSignal`: a Bastion signal type name (``pdq``, ``md5``, ``vpdq``...), the
value in that type's canonical form, and labels. Labels keep everything the source said (e.g. TAT's ``ideology``
as ``tat_ideology``) beside the Bastion taxonomy keys they map to (``category``, ``ideology``, ``entity``,
``source``): nothing a source says is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

FeedbackKind = Literal["agree", "disagree_label", "false_positive", "seen"]
FEEDBACK_KINDS: tuple[str, ...] = ("agree", "disagree_label", "false_positive", "seen")


@dataclass(frozen=True)
class ExchangedSignal:
    """One hash as an exchange carries it."""

    signal_type: str
    value: str
    labels: dict[str, str] = field(default_factory=dict)
    source_id: str = ""  # the exchange's own id for this hash / contribution (feedback names it)
    contributor: str | None = None  # who contributed it (a forum member's name, a TE app id...)
    created_at: datetime | None = None
    retracted: bool = False  # the contributor withdrew it: stop matching it
    incident: str | None = None  # an active incident it was contributed under (forum incident protocol)
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. consensus, signature, raw source fields


@dataclass(frozen=True)
class FetchPage:
    signals: list[ExchangedSignal]
    next_cursor: str | None  # where the next fetch starts; store it with this page's signals
    more: bool  # another page is ready now (False: caught up)


@dataclass(frozen=True)
class Feedback:
    source_id: str
    kind: FeedbackKind
    note: str = ""
    labels: dict[str, str] = field(default_factory=dict)  # the labels the member thinks are right (disagree_label)


@dataclass(frozen=True)
class PushResult:
    accepted: int
    rejected: list[dict[str, Any]] = field(default_factory=list)  # {"index", "code", "message"} per refused signal


@runtime_checkable
class Exchange(Protocol):
    """A source of labelled hashes behind one interface (see the module docstring)."""

    kind: str  # "bastion-forum", "threatexchange", "tat", "file"...
    name: str  # this organisation's name for it

    def fetch(self, cursor: str | None, limit: int = 1000) -> FetchPage: ...

    @property
    def can_push(self) -> bool: ...

    def push(self, signals: Sequence[ExchangedSignal]) -> PushResult: ...

    def send_feedback(self, feedback: Sequence[Feedback]) -> int: ...
