"""Where a piece of content waits for a person, and how urgently: queue routing and priority.

An organisation defines named queues (``review_queues``) with criteria over the policy outcome, jurisdictions,
languages and categories, and the roles that may work each one. A decision that sends content to review lands in
the queue its policy rule named when it named one; otherwise in the first queue (by ``position``) whose criteria
all hold; otherwise in the policy's default queue: ``review``, or ``escalation`` (leads and admins) for outcome
"escalate". ``appeals`` and ``qa`` also always exist.

Priority follows the spirit of Tech Against Terrorism's Altitude: imminent threat to life first, then an authority
deadline, the labels' severity, the signals' confidence, a trusted source and the content's reach. It is one
integer (higher first), stored with the item so the next-item query is a plain index scan; ``explain_priority``
gives the parts for the item view.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bastion.banks.taxonomy import CATEGORIES
from bastion.errors import InvalidInput

DEFAULT_QUEUE = "review"  # the policy's default queue for outcome "review" (policy/rules.py)
ESCALATIONS = "escalation"  # ... and for outcome "escalate"
APPEALS = "appeals"
QA = "qa"
BUILT_IN_QUEUES = (DEFAULT_QUEUE, ESCALATIONS, APPEALS, QA)
LEAD_ROLES = ("lead", "admin")
#: roles that may work the built-in queues (empty tuple: every role)
BUILT_IN_ROLES: dict[str, tuple[str, ...]] = {DEFAULT_QUEUE: (), ESCALATIONS: LEAD_ROLES, APPEALS: (), QA: ()}

CRITERIA_KEYS = ("outcomes", "jurisdictions", "languages", "categories")
ROUTABLE_OUTCOMES = ("review", "escalate")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")

# Label severity: the categories that mean someone may be hurt now come first.
SEVERITY_OF_CATEGORY: dict[str, str] = {
    "imminent_credible_threat": "threat_to_life",
    "livestreamed_attack": "threat_to_life",
    "attacker_manifesto": "high",
    "graphic_violence": "high",
    "instructional": "high",
    "recruitment": "high",
    "branded_publication": "normal",
    "glorification": "normal",
    "propaganda": "normal",
    "symbols_insignia": "low",
    "other": "low",
}
SEVERITY_ORDER = ("threat_to_life", "high", "normal", "low")
_SEVERITY_POINTS = {"threat_to_life": 100_000, "high": 3_000, "normal": 1_500, "low": 500}
TRUSTED_SOURCES = frozenset({"authority_order", "gifct", "forum", "tech_against_terrorism", "own_review"})


def validate_queue_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise InvalidInput(
            "a queue name is 1-64 lower-case letters, digits, '_', '-' or '.', starting with a letter or digit",
            code="invalid_queue_name",
        )
    return name


def validate_criteria(criteria: dict[str, Any] | None) -> dict[str, list[str]]:
    """Criteria as stored: each key a sorted list of accepted values (an absent key accepts anything)."""
    from bastion.intake.service import validate_jurisdiction  # the one ISO 3166 check

    out: dict[str, list[str]] = {}
    for key, values in (criteria or {}).items():
        if key not in CRITERIA_KEYS:
            raise InvalidInput(f"unknown queue criterion {key!r}; allowed: {', '.join(CRITERIA_KEYS)}",
                               code="invalid_queue_criteria")
        if isinstance(values, str):
            values = [values]
        if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values) or not values:
            raise InvalidInput(f"queue criterion {key!r} must be a non-empty list of strings",
                               code="invalid_queue_criteria")
        if key == "outcomes":
            bad = [v for v in values if v not in ROUTABLE_OUTCOMES]
            if bad:
                raise InvalidInput(f"outcome(s) {', '.join(bad)} never reach review; use: "
                                   f"{', '.join(ROUTABLE_OUTCOMES)}", code="invalid_queue_criteria")
        elif key == "jurisdictions":
            values = [validate_jurisdiction(v) for v in values]
        elif key == "languages":
            values = [v.lower() for v in values]
        elif key == "categories":
            bad = [v for v in values if v not in CATEGORIES]
            if bad:
                raise InvalidInput(f"unknown categor(y/ies) {', '.join(bad)}; allowed: {', '.join(CATEGORIES)}",
                                   code="invalid_queue_criteria")
        out[key] = sorted(set(values))
    return out


@dataclass(frozen=True)
class QueueRule:
    """One organisation queue as routing sees it."""

    name: str
    criteria: dict[str, list[str]]
    roles: tuple[str, ...] = ()

    def accepts(self, outcome: str, jurisdictions: list[str], language: str | None, category: str | None) -> bool:
        c = self.criteria
        if "outcomes" in c and outcome not in c["outcomes"]:
            return False
        if "jurisdictions" in c and not set(jurisdictions) & set(c["jurisdictions"]):
            return False
        if "languages" in c and (language or "").split("-")[0].lower() not in c["languages"] \
                and (language or "").lower() not in c["languages"]:
            return False
        return not ("categories" in c and category not in c["categories"])


def route(queues: list[QueueRule], *, policy_queue: str | None, outcome: str, jurisdictions: list[str],
          language: str | None, category: str | None) -> str:
    """The queue an item waits in (see the module docstring)."""
    if policy_queue and policy_queue not in (DEFAULT_QUEUE, ESCALATIONS):
        return policy_queue  # a rule named its queue
    for q in queues:
        if q.accepts(outcome, jurisdictions, language, category):
            return q.name
    return ESCALATIONS if outcome == "escalate" else DEFAULT_QUEUE


def category_of(evidence: dict[str, Any]) -> str | None:
    """The most severe category among the matched bank entries' labels (None when nothing matched with one)."""
    found = [m.get("labels", {}).get("category") for m in evidence.get("matches", [])]
    found = [c for c in found if c in SEVERITY_OF_CATEGORY]
    if not found:
        return None
    return min(found, key=lambda c: SEVERITY_ORDER.index(SEVERITY_OF_CATEGORY[c]))


def severity_of(outcome: str, category: str | None) -> str:
    if outcome == "escalate":
        return "threat_to_life"
    return SEVERITY_OF_CATEGORY.get(category or "", "normal")


def confidence_of(evidence: dict[str, Any]) -> float:
    """0..1: how sure the signals are. A PDQ match at distance 0 is 1.0, at the threshold ~0; classifiers give
    their score; an exact (md5/sha256) match is 1.0."""
    best = 0.0
    for m in evidence.get("matches", []):
        stype, d = m.get("signal_type", ""), float(m.get("distance", 0) or 0)
        if stype == "pdq":
            best = max(best, max(0.0, 1 - d / 32))
        elif stype in ("text_minhash", "text_embedding"):
            best = max(best, max(0.0, 1 - d))
        else:
            best = max(best, 1.0 if d == 0 else 0.5)
    for c in evidence.get("classifier_scores", []):
        best = max(best, float(c.get("score", 0) or 0))
    return round(best, 3)


def trusted_of(evidence: dict[str, Any]) -> bool:
    return any(m.get("source") in TRUSTED_SOURCES for m in evidence.get("matches", []))


def explain_priority(*, severity: str, policy_priority: int | None, confidence: float, trusted: bool,
                     reach: int | None, deadline_at: datetime | None, now: datetime) -> dict[str, int]:
    """The parts of an item's priority (their sum is the priority)."""
    parts = {"severity": _SEVERITY_POINTS.get(severity, 1_500)}
    if deadline_at is not None:  # an authority order: the closer the deadline, the higher (within 24 h)
        minutes_left = max(0.0, (deadline_at - now).total_seconds() / 60)
        parts["deadline"] = 50_000 + int(max(0.0, 1440 - minutes_left) * 10)
    parts["policy"] = (11 - policy_priority) * 100 if policy_priority else 500  # rule priority 1 (urgent)..10
    parts["confidence"] = int(confidence * 800)
    parts["trusted_source"] = 400 if trusted else 0
    parts["reach"] = int(min(math.log10(max(reach or 0, 0) + 1), 9) * 100)
    return parts
