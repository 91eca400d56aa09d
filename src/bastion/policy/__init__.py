"""Policy: an organisation's declarative rules (YAML) decide what happens to a piece of content.

The contract between the decision pipeline and the rules engine is two small types: :class:`Evidence` (everything
known about one submission when it is decided) and :class:`Verdict` (what the rules say, and which rule said it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

OUTCOMES = ("remove", "restrict", "review", "escalate", "allow")


@dataclass
class Evidence:
    """What the pipeline knows about one submission when the rules run over it.

    ``matches``: one dict per matched bank entry, :meth:`bastion.matching.matcher.Match.to_dict` plus ``bank_id``
    and ``bank_kind`` (always "block": allow-list matches suppress block matches before policy runs; the suppressed
    ones are in ``suppressed``). ``classifier_scores``: ``{"classifier", "label", "score" (0..1), "details"}``.
    ``entities``: designated organisations named in the text, ``{"entity", "name", "lists", "matched"}``.
    """

    organisation_id: int
    source: str  # upload | text | url
    content_type: str | None = None  # image | video | text | pdf ...
    surface: str | None = None  # post | comment | message | profile | livestream ...
    jurisdictions: list[str] = field(default_factory=list)
    language: str | None = None
    uploader_id: str | None = None
    prior_violations: int = 0  # the uploader's earlier remove/restrict/escalate decisions in this organisation
    matches: list[dict[str, Any]] = field(default_factory=list)
    suppressed: list[dict[str, Any]] = field(default_factory=list)
    classifier_scores: list[dict[str, Any]] = field(default_factory=list)
    entities: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evidence:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class Verdict:
    """The rules' answer for one piece of evidence. ``shadow`` lists shadow rules that matched (logged, not acted
    on): ``{"rule", "outcome", ...}``."""

    outcome: str
    rule: str | None = None
    policy_version: int | None = None
    reason: str = ""
    restrict_in: list[str] = field(default_factory=list)
    queue: str | None = None
    priority: int | None = None
    shadow: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
