"""The incident protocol on the member side: when hashes tagged with an active incident arrive, rescan the
organisation's recent uploads against them and decide the hits again through the organisation's policy.

:func:`bastion.forum.rescan.rescan_recent` finds the submissions (received within the incident's window) whose
stored signals match the new hashes; each one is then analysed again by the normal
:class:`~bastion.decisions.pipeline.DecisionPipeline` (its matcher now holds the forum's hashes), and when the
policy's outcome differs from the decision in force, a new *automated* decision version is written with its audit
record and a ``decision.changed`` webhook event, in one transaction, so the platform acts on it as on any decision.
A decision a person made (review, appeal) is never overridden by a rescan.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from bastion import audit
from bastion.decisions.pipeline import (
    DecisionPipeline,
    apply_outcome,
    automated_decision,
    content_summary,
    decision_dict,
)
from bastion.exchanges.base import ExchangedSignal
from bastion.signals.base import Signal
from bastion.storage.db import Database
from bastion.storage.models import ContentItem, Decision, utcnow

log = logging.getLogger(__name__)


def rescan_and_decide(
    db: Database,
    pipeline: DecisionPipeline,
    organisation_id: int,
    signals: Sequence[ExchangedSignal],
    window_hours: float,
    *,
    actor: str = "forum-incident",
) -> list[dict[str, Any]]:
    """Rescan the organisation's uploads of the last ``window_hours`` against ``signals``; returns the new
    decisions written (content id, previous and new outcome, incident)."""
    from bastion.forum.rescan import rescan_recent

    live = [s for s in signals if not s.retracted]
    if not live:
        return []
    hits = rescan_recent(db, organisation_id, live, utcnow() - timedelta(hours=window_hours))
    if not hits:
        return []
    pipeline.matcher.refresh(force=True)  # the forum's new hashes are in the index before deciding again
    incidents: dict[int, str | None] = {}
    for h in hits:
        incidents.setdefault(h.content_id, h.signal.incident)
    out = []
    for content_id, incident in incidents.items():
        changed = decide_again(db, pipeline, content_id, actor=actor, incident=incident)
        if changed is not None:
            out.append(changed)
    return out


def decide_again(
    db: Database, pipeline: DecisionPipeline, content_id: int, *, actor: str, incident: str | None = None
) -> dict[str, Any] | None:
    """Run the policy again on a stored submission's signals; write a new automated decision version when the
    outcome changes (None when it does not, when the item is not decided yet, or when a person decided it)."""
    with db.session() as s:
        item = s.get(ContentItem, content_id)
        latest = s.scalars(
            select(Decision).where(Decision.content_id == content_id).order_by(Decision.version.desc()).limit(1)
        ).first()
        if item is None or latest is None or item.status != "decided" or not latest.automated:
            return None
        s.expunge(item)
    signals = [Signal(d["type"], d["value"], d.get("quality")) for d in item.signals or [] if d.get("type")]
    analysis = pipeline.analyse(item, None, signals=signals)
    v = analysis.verdict
    if v.outcome == latest.outcome:
        return None
    with db.session() as s:
        item = s.get(ContentItem, content_id)
        assert item is not None
        evidence = analysis.evidence.to_dict()
        evidence["rescan"] = {"incident": incident, "previous": {"version": latest.version, "outcome": latest.outcome}}
        d = automated_decision(item, analysis, version=latest.version + 1, actor=actor, at=utcnow(), evidence=evidence)
        s.add(d)
        s.flush()  # the unique (content, version) key: a concurrent rescan of the same item fails here
        audit.append(
            s,
            actor,
            "decision_changed",
            f"content:{content_id}",
            {
                "version": d.version,
                "outcome": d.outcome,
                "previous": latest.outcome,
                "rule": d.rule,
                "incident": incident,
                "reinstated": False,
            },
            organisation_id=item.organisation_id,
        )
        from bastion.webhooks import emit

        emit(
            s,
            item.organisation_id,
            "decision.changed",
            {
                "content": content_summary(item),
                "decision": decision_dict(d),
                "previous_outcome": latest.outcome,
                "reinstated": False,
            },
        )
        apply_outcome(s, pipeline.settings, item, d, actor)
        return {
            "content_id": content_id,
            "version": d.version,
            "previous": latest.outcome,
            "outcome": d.outcome,
            "incident": incident,
        }
