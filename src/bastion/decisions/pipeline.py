"""One submission's path from content to decision.

``analyse`` does the expensive, read-only part outside any write transaction: compute signals, match them against
the organisation's banks (its own and those shared with it), run its classifiers, look up the uploader's history,
and ask its policy. ``record`` then writes, in the caller's transaction, the decision with its evidence, the audit
record and the ``decision.made`` webhook event, so all three exist together or not at all.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bastion import audit
from bastion import signals as signal_registry
from bastion.banks.service import visible_bank_ids
from bastion.content import Content, ContentType
from bastion.decisions.metrics import PipelineMetrics
from bastion.errors import BastionError
from bastion.matching.live import LiveMatcher
from bastion.policy import Evidence, Verdict
from bastion.settings import Settings
from bastion.signals.base import Signal
from bastion.storage.db import Database
from bastion.storage.models import ContentBlob, ContentItem, Decision, Organisation, as_utc, utcnow

log = logging.getLogger(__name__)

VIOLATING_OUTCOMES = ("remove", "restrict", "escalate")


@dataclass
class Analysis:
    """Everything ``analyse`` found: the signals kept with the item, the evidence and the policy's verdict."""

    signals: list[Signal]
    evidence: Evidence
    verdict: Verdict
    timings: dict[str, float] = field(default_factory=dict)


REVIEWED_OUTCOMES = ("review", "escalate")  # decisions that put the content in a review queue
PRESERVED_OUTCOMES = ("remove", "restrict")  # restrictions: preserved with their bytes (bastion.compliance)


def stored_signals(signals: list[Signal]) -> list[dict[str, Any]]:
    return [s.to_dict() for s in signals]


def prior_violations(session: Session, organisation_id: int, uploader_id: str | None) -> int:
    """How many of the uploader's earlier submissions stand removed, restricted or escalated (newest decision)."""
    if not uploader_id:
        return 0
    newest = (
        select(Decision.content_id, func.max(Decision.version).label("v"))
        .join(ContentItem, ContentItem.id == Decision.content_id)
        .where(ContentItem.organisation_id == organisation_id, ContentItem.uploader_id == uploader_id)
        .group_by(Decision.content_id)
        .subquery()
    )
    return session.scalar(
        select(func.count())
        .select_from(Decision)
        .join(newest, (newest.c.content_id == Decision.content_id) & (newest.c.v == Decision.version))
        .where(Decision.outcome.in_(VIOLATING_OUTCOMES))
    ) or 0


def decision_dict(d: Decision) -> dict[str, Any]:
    return {
        "version": d.version,
        "outcome": d.outcome,
        "restrict_in": list(d.restrict_in or []),
        "queue": d.queue,
        "priority": d.priority,
        "rule": d.rule,
        "policy_version": d.policy_version,
        "automated": d.automated,
        "actor": d.actor,
        "reason": d.reason,
        "decided_at": _iso(d.created_at),
        "evidence": d.evidence,
        "shadow": list(d.shadow or []),
    }


def _iso(dt: Any) -> str | None:
    if dt is None:
        return None
    return as_utc(dt).isoformat().replace("+00:00", "Z")


@dataclass
class OrganisationContext:
    """What the pipeline reads about an organisation for every decision: its configuration and the banks it
    matches against. Cached per process for ``BASTION_INDEX_REFRESH_SECONDS`` (like the bank index itself: a new
    share or classifier setting reaches every process within that time); the policy is read on every decision."""

    config: dict[str, Any]
    bank_ids: list[int]
    loaded_at: float
    url_fetch_enabled: bool = False


class DecisionPipeline:
    def __init__(self, db: Database, settings: Settings, matcher: LiveMatcher,
                 metrics: PipelineMetrics | None = None) -> None:
        self.db = db
        self.settings = settings
        self.matcher = matcher
        self.metrics = metrics
        self._contexts: dict[int, OrganisationContext] = {}
        self._contexts_lock = threading.Lock()

    def organisation(self, organisation_id: int) -> OrganisationContext:
        now = time.monotonic()
        ctx = self._contexts.get(organisation_id)
        if ctx is not None and now - ctx.loaded_at < self.settings.index_refresh_seconds:
            return ctx
        with self.db.session() as s:
            org = s.get(Organisation, organisation_id)
            if org is None:
                raise BastionError(f"organisation {organisation_id} does not exist", code="unknown_organisation")
            ctx = OrganisationContext(dict(org.config or {}), visible_bank_ids(s, organisation_id), now,
                                      bool(org.url_fetch_enabled))
        with self._contexts_lock:
            self._contexts[organisation_id] = ctx
        return ctx

    def forget_organisation(self, organisation_id: int) -> None:
        """Drop the cached context (this process changed the organisation's settings or banks)."""
        with self._contexts_lock:
            self._contexts.pop(organisation_id, None)

    # -- reading ------------------------------------------------------------------------------------------------------
    def compute_signals(self, content: Content) -> list[Signal]:
        """Every usable signal of the content; when none could be computed, the first error is raised (bad input)."""
        sigs, errors = signal_registry.compute_each(content, hashes_only=True)
        kept = signal_registry.usable(sigs)
        strong = [s for s in sigs if s.type not in ("md5", "sha256")]
        if errors and not strong and content.content_type in (ContentType.IMAGE, ContentType.VIDEO):
            raise errors[0]  # a truncated or mislabelled image or video: refuse it rather than hash its bytes only
        if errors:
            log.info("some signals failed", extra={"errors": [e.code for e in errors]})
        return kept

    def analyse(self, item: ContentItem, content: Content | None, signals: list[Signal] | None = None) -> Analysis:
        """Signals, matches, classifier scores, uploader history and the policy's verdict for ``item`` (not yet
        necessarily stored: only its organisation and metadata are read)."""
        t0 = time.perf_counter()
        if signals is None:
            signals = self.compute_signals(content) if content is not None else []
        t1 = time.perf_counter()
        org = self.organisation(item.organisation_id)
        config, bank_ids = org.config, org.bank_ids
        history = 0
        if item.uploader_id:
            with self.db.session() as s:
                history = prior_violations(s, item.organisation_id, item.uploader_id)
        result = self.matcher.match(signals, bank_ids=bank_ids)
        t2 = time.perf_counter()
        scores, entities = self._classify(config, content, item, bank_ids)
        t3 = time.perf_counter()
        evidence = Evidence(
            organisation_id=item.organisation_id,
            source=item.source,
            content_type=content.content_type.value if content is not None else item.content_type,
            surface=item.surface,
            jurisdictions=list(item.jurisdictions or []),
            language=item.language,
            uploader_id=item.uploader_id,
            prior_violations=history,
            matches=[_match_dict(m) for m in result.matches],
            suppressed=[_match_dict(m) for m in result.suppressed + result.allowed_by],
            classifier_scores=scores,
            entities=entities,
        )
        verdict = self._policy(evidence)
        t4 = time.perf_counter()
        timings = {"hash": t1 - t0, "match": t2 - t1, "classify": t3 - t2, "policy": t4 - t3}
        return Analysis(signals=signals, evidence=evidence, verdict=verdict, timings=timings)

    def _classify(
        self, config: dict[str, Any], content: Content | None, item: ContentItem, bank_ids: list[int]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        if content is None or content.content_type not in (ContentType.TEXT, ContentType.PDF):
            return [], []
        from bastion.classifiers import ClassifierInput, run_classifiers

        try:
            text = content.text
        except BastionError:
            return [], []
        inp = ClassifierInput(text=text, content_type=content.content_type.value, language=item.language)
        return run_classifiers(self.db, config, inp, bank_ids)

    def _policy(self, evidence: Evidence) -> Verdict:
        from bastion.policy.engine import decide
        from bastion.policy.service import PolicyService

        version, compiled = PolicyService(self.db).current(evidence.organisation_id)
        return decide(compiled, evidence, version=version)

    # -- writing ------------------------------------------------------------------------------------------------------
    @staticmethod
    def prepare(item: ContentItem, analysis: Analysis, now: datetime | None = None) -> None:
        """Set the item's signals and decided status from ``analysis`` (before or after it is inserted)."""
        item.signals = stored_signals(analysis.signals)
        item.status = "decided"
        item.decided_at = item.decided_at or now or utcnow()
        item.error = None

    def record(self, session: Session, item: ContentItem, analysis: Analysis, *, actor: str = "policy",
               queued: bool = False, data: bytes | None = None) -> Decision:
        """Write ``analysis`` as the item's first decision, in ``session``: the decision, the item's signals and
        status, the audit record and the ``decision.made`` event. The unique (content, version) key makes a second
        attempt fail instead of deciding twice."""
        v = analysis.verdict
        now = item.decided_at if item.status == "decided" and item.decided_at else utcnow()
        decision = automated_decision(item, analysis, version=1, actor=actor, at=now)
        session.add(decision)
        self.prepare(item, analysis, now)
        if v.outcome in PRESERVED_OUTCOMES and data is None:  # preserved below, before the bytes go
            data = session.scalar(select(ContentBlob.data).where(ContentBlob.content_id == item.id))
        if queued and v.outcome not in REVIEWED_OUTCOMES:  # bytes are kept only for the people who review them
            session.query(ContentBlob).filter(ContentBlob.content_id == item.id).delete(synchronize_session=False)
        session.flush()
        details = {"external_id": item.external_id, "outcome": v.outcome, "rule": v.rule,
                   "policy_version": v.policy_version,
                   "matches": [[m["bank"], m["entry_id"], m["signal_type"], m["distance"]]
                               for m in analysis.evidence.matches][:20]}
        audit.append(session, actor, "decision_made", f"content:{item.id}", details,
                     organisation_id=item.organisation_id)
        _emit(session, item, "decision.made", {"content": content_summary(item), "decision": decision_dict(decision)})
        apply_outcome(session, self.settings, item, decision, actor, data)
        if self.metrics is not None:
            self.metrics.observe(item.source, item.content_type, v.outcome,
                                 sorted({m["bank"] for m in analysis.evidence.matches}), analysis.timings)
        return decision

    def record_failure(self, session: Session, item: ContentItem, error: BastionError) -> None:
        """A submission that could not be processed (a corrupt video, an unreachable URL): failed, with its code."""
        item.status = "failed"
        item.error = {"code": error.code, "message": error.message}
        item.decided_at = utcnow()
        session.query(ContentBlob).filter(ContentBlob.content_id == item.id).delete(synchronize_session=False)
        audit.append(session, "worker", "content_failed", f"content:{item.id}", {"code": error.code},
                     organisation_id=item.organisation_id)
        _emit(session, item, "content.failed", {"content": content_summary(item)})


def content_summary(item: ContentItem) -> dict[str, Any]:
    return {
        "id": item.id,
        "external_id": item.external_id,
        "uploader_id": item.uploader_id,
        "jurisdictions": list(item.jurisdictions or []),
        "surface": item.surface,
        "language": item.language,
        "source": item.source,
        "url": item.url,
        "content_type": item.content_type,
        "media_type": item.media_type,
        "size_bytes": item.size_bytes,
        "sha256": item.sha256,
        "status": item.status,
        "error": item.error,
        "submitted_at": _iso(item.created_at),
        "decided_at": _iso(item.decided_at),
    }


def _match_dict(m: Any) -> dict[str, Any]:
    out = m.to_dict()
    out["bank_id"] = m.bank_id
    out["bank_kind"] = m.bank_kind
    return out


def _emit(session: Session, item: ContentItem, event_type: str, payload: dict[str, Any]) -> None:
    from bastion.webhooks import emit

    emit(session, item.organisation_id, event_type, payload)


def automated_decision(
    item: ContentItem,
    analysis: Analysis,
    *,
    version: int,
    actor: str,
    at: datetime,
    evidence: dict[str, Any] | None = None,
) -> Decision:
    """The Decision row for a policy verdict on ``item`` (version ``version``): the one shape every automated decision
    is written in, first decisions (DecisionPipeline.record) and later ones (a forum incident's rescan) alike."""
    v = analysis.verdict
    return Decision(
        content_id=item.id,
        organisation_id=item.organisation_id,
        version=version,
        outcome=v.outcome,
        restrict_in=list(v.restrict_in),
        queue=v.queue,
        priority=v.priority,
        rule=v.rule,
        policy_version=v.policy_version,
        automated=True,
        actor=actor,
        reason=v.reason,
        evidence=evidence if evidence is not None else analysis.evidence.to_dict(),
        shadow=list(v.shadow),
        created_at=at,
    )


def apply_outcome(
    session: Session, settings: Settings, item: ContentItem, decision: Decision, actor: str, data: bytes | None = None
) -> None:
    """What an automated decision's outcome sets going, in the decision's transaction: a review item for the
    outcomes people decide, the encrypted preserved copy of removed content (TCO Art. 6), and the report to law
    enforcement of an imminent threat to life (TCO Art. 14(5))."""
    if decision.outcome in REVIEWED_OUTCOMES:
        from bastion.review.service import enqueue

        enqueue(session, item, decision)
    if decision.outcome in PRESERVED_OUTCOMES:
        from bastion.compliance.preservation import preserve_on_decision

        if data is None:
            data = session.scalar(select(ContentBlob.data).where(ContentBlob.content_id == item.id))
        preserve_on_decision(session, settings, item, decision, data)
    if decision.outcome == "escalate":
        from bastion.compliance.escalation import open_escalation

        open_escalation(session, item, decision, actor)
