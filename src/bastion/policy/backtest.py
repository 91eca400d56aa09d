"""Backtest: what a draft rules file would have decided about an organisation's recent submissions.

Each stored submission (``content_items``) of the window is paired with its newest decision (``decisions``); the
draft is run over the evidence recorded with the decisions (``Decision.evidence``, an :class:`Evidence` dict), so no
content bytes are needed and the matches are those seen at the time. When the newest decision carries no evidence
(a reviewer's decision, say), the newest earlier decision that does is used. Submissions without any decision yet
(pending, failed) are counted as skipped.

The report compares the draft's outcome and rule with the newest decision's, item by item, and totals the outcomes
before and after. Nothing is written.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, select

from bastion.errors import InvalidInput
from bastion.policy import OUTCOMES, Evidence
from bastion.policy.engine import compile_policy, decide
from bastion.storage.db import Database
from bastion.storage.models import ContentItem, Decision, as_utc, utcnow

MAX_WINDOW = timedelta(days=3660)
PAGE = 500
_DURATION_RE = re.compile(r"^\s*(\d{1,6})\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str | int | timedelta) -> timedelta:
    """``"30m"``, ``"12h"``, ``"7d"``, ``"2w"`` (or seconds as a number) as a timedelta; InvalidInput otherwise."""
    if isinstance(text, timedelta):
        value = text
    elif isinstance(text, int) and not isinstance(text, bool):
        value = timedelta(seconds=text)
    else:
        m = _DURATION_RE.match(str(text).lower())
        if not m:
            raise InvalidInput(
                f"cannot read the duration {text!r}: use a number and a unit, e.g. 30m, 12h, 7d or 2w",
                code="invalid_duration",
            )
        value = timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    if value <= timedelta(0) or value > MAX_WINDOW:
        raise InvalidInput("the backtest window must be positive and at most 3660 days", code="invalid_duration")
    return value


@dataclass
class BacktestItem:
    content_id: int
    external_id: str
    created_at: str
    old_outcome: str
    old_rule: str | None
    old_policy_version: int | None
    old_automated: bool
    new_outcome: str
    new_rule: str | None
    new_restrict_in: list[str] = field(default_factory=list)
    new_queue: str | None = None

    @property
    def outcome_changed(self) -> bool:
        return self.old_outcome != self.new_outcome

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "outcome_changed": self.outcome_changed}


@dataclass
class BacktestReport:
    organisation_id: int
    since: str
    window_start: str
    draft_sha256: str
    considered: int = 0  # submissions with a decision in the window
    skipped: int = 0  # submissions in the window without a decision (pending or failed)
    changed: int = 0  # outcome or rule differ
    outcome_changed: int = 0
    before: dict[str, int] = field(default_factory=dict)
    after: dict[str, int] = field(default_factory=dict)
    transitions: dict[str, int] = field(default_factory=dict)  # "remove -> review": count (outcome changes only)
    rule_hits: dict[str, int] = field(default_factory=dict)  # draft rule (or "(default)") -> submissions it decided
    shadow_hits: dict[str, int] = field(default_factory=dict)
    items: list[BacktestItem] = field(default_factory=list)  # the changed submissions, oldest first
    truncated: bool = False  # more changed submissions than max_items (the totals still count all)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["items"] = [i.to_dict() for i in self.items]
        return out


def _iso(at: datetime) -> str:
    return as_utc(at).isoformat()


def _evidence(item: ContentItem, recorded: dict[str, Any] | None) -> Evidence:
    data = dict(recorded or {})
    data["organisation_id"] = item.organisation_id
    for key in ("source", "content_type", "surface", "language", "uploader_id"):
        if data.get(key) is None:
            data[key] = getattr(item, key)
    if not data.get("jurisdictions"):
        data["jurisdictions"] = list(item.jurisdictions or [])
    return Evidence.from_dict(data)


def _zeroes() -> dict[str, int]:
    return dict.fromkeys(OUTCOMES, 0)


def backtest(
    db: Database, organisation_id: int, draft_source: str, since: timedelta | str, *, max_items: int = 1000
) -> BacktestReport:
    """Run ``draft_source`` over the organisation's submissions of the last ``since`` (InvalidPolicy when the
    draft is invalid, before any reading)."""
    policy = compile_policy(draft_source)
    window = parse_duration(since)
    start = utcnow() - window
    label = since.strip() if isinstance(since, str) else f"{int(window.total_seconds())}s"
    report = BacktestReport(organisation_id, label, _iso(start), policy.sha256, before=_zeroes(), after=_zeroes())
    transitions: Counter[str] = Counter()
    rule_hits: Counter[str] = Counter()
    shadow_hits: Counter[str] = Counter()
    newest = (
        select(Decision.content_id, func.max(Decision.version).label("v"))
        .where(Decision.organisation_id == organisation_id)
        .group_by(Decision.content_id)
        .subquery()
    )
    last_id = 0
    with db.session() as s:
        while True:
            items = list(
                s.scalars(
                    select(ContentItem)
                    .where(
                        ContentItem.organisation_id == organisation_id,
                        ContentItem.created_at >= start,
                        ContentItem.id > last_id,
                    )
                    .order_by(ContentItem.id)
                    .limit(PAGE)
                )
            )
            if not items:
                break
            last_id = items[-1].id
            ids = [i.id for i in items]
            decisions: dict[int, Decision] = {
                d.content_id: d
                for d in s.scalars(
                    select(Decision).join(
                        newest, and_(Decision.content_id == newest.c.content_id, Decision.version == newest.c.v)
                    ).where(Decision.content_id.in_(ids))
                )
            }
            need_evidence = [cid for cid, d in decisions.items() if not d.evidence]
            earlier: dict[int, dict[str, Any]] = {}
            if need_evidence:
                for d in s.scalars(
                    select(Decision).where(Decision.content_id.in_(need_evidence)).order_by(Decision.version.desc())
                ):
                    if d.evidence and d.content_id not in earlier:
                        earlier[d.content_id] = d.evidence
            for item in items:
                old = decisions.get(item.id)
                if old is None:
                    report.skipped += 1
                    continue
                verdict = decide(policy, _evidence(item, old.evidence or earlier.get(item.id)))
                report.considered += 1
                report.before[old.outcome] = report.before.get(old.outcome, 0) + 1
                report.after[verdict.outcome] += 1
                rule_hits[verdict.rule or "(default)"] += 1
                for sh in verdict.shadow:
                    shadow_hits[sh["rule"]] += 1
                if (old.outcome, old.rule) == (verdict.outcome, verdict.rule):
                    continue
                report.changed += 1
                if old.outcome != verdict.outcome:
                    report.outcome_changed += 1
                    transitions[f"{old.outcome} -> {verdict.outcome}"] += 1
                if len(report.items) >= max_items:
                    report.truncated = True
                    continue
                report.items.append(
                    BacktestItem(
                        content_id=item.id,
                        external_id=item.external_id,
                        created_at=_iso(item.created_at),
                        old_outcome=old.outcome,
                        old_rule=old.rule,
                        old_policy_version=old.policy_version,
                        old_automated=bool(old.automated),
                        new_outcome=verdict.outcome,
                        new_rule=verdict.rule,
                        new_restrict_in=verdict.restrict_in,
                        new_queue=verdict.queue,
                    )
                )
    report.transitions = dict(sorted(transitions.items()))
    report.rule_hits = dict(sorted(rule_hits.items()))
    report.shadow_hits = dict(sorted(shadow_hits.items()))
    return report
