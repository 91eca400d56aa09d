"""Human review: items waiting for a person, leased one at a time, decided, second-checked and appealed.

Data flows in one direction: the decision pipeline (or an appeal, or a reviewer's escalation) *enqueues* a
:class:`~bastion.storage.models.ReviewItem` in the same transaction as the decision that sent it; a reviewer
*leases* the next item of the queues their role may work (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, the single
writer on SQLite, so no two reviewers ever hold the same item); their *decision* writes the content's next
:class:`~bastion.storage.models.Decision` version, the audit record and the ``decision.changed`` and
``review.completed`` webhook events in one transaction, refused when their lease expired or was taken.

Quality assurance sends a share of decisions (the organisation's ``review.qa_share``) to a second reviewer, who
decides blind; agreement is kept per decision. Appeals are always decided by someone other than the reviewer of
the decision appealed; overturning reinstates the content and can disable the bank entries that caused it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.orm import Session

from bastion import audit
from bastion.banks.taxonomy import CATEGORIES
from bastion.errors import Conflict, Forbidden, InvalidInput, NotFound
from bastion.review.routing import (
    APPEALS,
    BUILT_IN_QUEUES,
    BUILT_IN_ROLES,
    ESCALATIONS,
    LEAD_ROLES,
    QA,
    QueueRule,
    category_of,
    confidence_of,
    explain_priority,
    route,
    severity_of,
    trusted_of,
    validate_criteria,
    validate_queue_name,
)
from bastion.settings import Settings
from bastion.storage.db import Database
from bastion.storage.models import (
    Appeal,
    ContentItem,
    Decision,
    Organisation,
    ReviewDecision,
    ReviewItem,
    ReviewQueue,
    User,
    as_utc,
    utcnow,
)

VERDICTS = ("violating", "not_violating", "escalate_lead", "escalate_law_enforcement")
APPEAL_VERDICTS = ("uphold", "overturn")
APPEAL_STATUSES = ("open", "upheld", "overturned")
ACTIONS = ("remove", "restrict")
APPEALABLE_OUTCOMES = ("remove", "restrict", "escalate")
REVIEW_ROLES = ("reviewer", "lead", "admin")
MAX_NOTE = 5000
MAX_REASON = 5000
DEFAULT_QA_SHARE = 0.0


class LeaseLost(Conflict):
    """The reviewer no longer holds the item: their lease expired and it was taken, or it was decided."""

    code = "lease_lost"


@dataclass(frozen=True)
class Reviewer:
    """The signed-in person acting on review items."""

    user_id: int
    organisation_id: int
    role: str
    email: str

    @property
    def actor(self) -> str:
        return f"user:{self.email}"

    @property
    def is_lead(self) -> bool:
        return self.role in LEAD_ROLES


@dataclass
class ItemInfo:
    """A review item as the console shows it in lists."""

    id: int
    content_id: int
    kind: str
    queue: str
    priority: int
    severity: str
    category: str | None
    status: str
    leased_by: int | None
    lease_expires_at: datetime | None
    deadline_at: datetime | None
    created_at: datetime
    appeal_id: int | None = None
    parent_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        for k in ("lease_expires_at", "deadline_at", "created_at"):
            out[k] = _iso(out[k])
        return out


def _iso(dt: datetime | None) -> str | None:
    return as_utc(dt).isoformat().replace("+00:00", "Z") if dt is not None else None


def _info(r: ReviewItem) -> ItemInfo:
    return ItemInfo(r.id, r.content_id, r.kind, r.queue, r.priority, r.severity, r.category, r.status, r.leased_by,
                    r.lease_expires_at, r.deadline_at, r.created_at, r.appeal_id, r.parent_id)


# -- enqueueing (inside the transaction of whatever sent the item) ----------------------------------------------------
def queue_rules(session: Session, organisation_id: int) -> list[QueueRule]:
    rows = session.scalars(
        select(ReviewQueue).where(ReviewQueue.organisation_id == organisation_id)
        .order_by(ReviewQueue.position, ReviewQueue.id)
    ).all()
    return [QueueRule(q.name, dict(q.criteria or {}), tuple(q.roles or ())) for q in rows]


def enqueue(
    session: Session,
    item: ContentItem,
    decision: Decision | None,
    *,
    kind: str = "review",
    queue: str | None = None,
    excluded_user_id: int | None = None,
    parent_id: int | None = None,
    appeal_id: int | None = None,
    deadline_at: datetime | None = None,
    severity: str | None = None,
) -> ReviewItem:
    """Add a review item for ``item`` in ``session`` (routed and prioritised; see :mod:`bastion.review.routing`)."""
    evidence = dict(decision.evidence or {}) if decision is not None else {}
    outcome = decision.outcome if decision is not None else "review"
    category = category_of(evidence)
    jurisdictions = list(item.jurisdictions or [])
    if queue is None:
        queue = route(queue_rules(session, item.organisation_id), policy_queue=decision.queue if decision else None,
                      outcome=outcome, jurisdictions=jurisdictions, language=item.language, category=category)
    sev = severity or severity_of(outcome, category)
    now = utcnow()
    parts = explain_priority(severity=sev, policy_priority=decision.priority if decision else None,
                             confidence=confidence_of(evidence), trusted=trusted_of(evidence), reach=item.reach,
                             deadline_at=deadline_at, now=now)
    row = ReviewItem(
        organisation_id=item.organisation_id, content_id=item.id, decision_id=decision.id if decision else None,
        kind=kind, queue=queue, priority=sum(parts.values()), severity=sev, category=category,
        language=item.language, jurisdictions=jurisdictions, status="open", excluded_user_id=excluded_user_id,
        parent_id=parent_id, appeal_id=appeal_id, deadline_at=deadline_at, created_at=now,
    )
    session.add(row)
    session.flush()
    return row


def _next_version(session: Session, content_id: int) -> int:
    return (session.scalar(select(func.max(Decision.version)).where(Decision.content_id == content_id)) or 0) + 1


def _latest_decision(session: Session, content_id: int) -> Decision | None:
    return session.scalars(
        select(Decision).where(Decision.content_id == content_id).order_by(Decision.version.desc()).limit(1)
    ).first()


def qa_sampled(organisation_id: int, review_decision_id: int, share: float) -> bool:
    """Deterministic sampling: the same decision is always in or out (so a retried transaction agrees)."""
    if share <= 0:
        return False
    if share >= 1:
        return True
    h = hashlib.sha256(f"qa:{organisation_id}:{review_decision_id}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64 < share


class ReviewService:
    """Every read and write of review items for one organisation's people."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.lease = timedelta(seconds=settings.review_lease_seconds)

    # -- queues ------------------------------------------------------------------------------------------------------
    def create_queue(self, actor: str, organisation_id: int, name: str, *, criteria: dict[str, Any] | None = None,
                     roles: list[str] | None = None, sla_minutes: int | None = None, description: str = "",
                     position: int | None = None) -> dict[str, Any]:
        name = validate_queue_name(name)
        if name in BUILT_IN_QUEUES:
            raise InvalidInput(f"{name!r} is a built-in queue", code="invalid_queue_name")
        clean = validate_criteria(criteria)
        bad_roles = sorted(set(roles or []) - set(REVIEW_ROLES))
        if bad_roles:
            raise InvalidInput(f"unknown role(s) {', '.join(bad_roles)}", code="invalid_role")
        if sla_minutes is not None and not (isinstance(sla_minutes, int) and 1 <= sla_minutes <= 525_600):
            raise InvalidInput("sla_minutes must be a whole number of minutes from 1 to 525600", code="invalid_sla")
        with self.db.session() as s:
            if s.scalar(select(ReviewQueue.id).where(ReviewQueue.organisation_id == organisation_id,
                                                     ReviewQueue.name == name)):
                raise Conflict(f"queue {name!r} already exists", code="queue_exists")
            if position is None:
                position = (s.scalar(select(func.max(ReviewQueue.position))
                                     .where(ReviewQueue.organisation_id == organisation_id)) or 0) + 1
            q = ReviewQueue(organisation_id=organisation_id, name=name, criteria=clean,
                            roles=[r for r in REVIEW_ROLES if r in (roles or [])], sla_minutes=sla_minutes,
                            description=description[:2000], position=position)
            s.add(q)
            s.flush()
            audit.append(s, actor, "review_queue_created", f"review_queue:{name}",
                         {"criteria": clean, "roles": q.roles, "sla_minutes": sla_minutes},
                         organisation_id=organisation_id)
            return _queue_dict(q)

    def delete_queue(self, actor: str, organisation_id: int, name: str) -> None:
        with self.db.session() as s:
            q = s.scalars(select(ReviewQueue).where(ReviewQueue.organisation_id == organisation_id,
                                                    ReviewQueue.name == name)).first()
            if q is None:
                raise NotFound(f"no queue {name!r}", code="queue_not_found")
            s.delete(q)
            audit.append(s, actor, "review_queue_deleted", f"review_queue:{name}", {},
                         organisation_id=organisation_id)

    def list_queues(self, organisation_id: int) -> list[dict[str, Any]]:
        with self.db.session() as s:
            defined = [_queue_dict(q) for q in s.scalars(
                select(ReviewQueue).where(ReviewQueue.organisation_id == organisation_id)
                .order_by(ReviewQueue.position, ReviewQueue.id))]
        names = {q["name"] for q in defined}
        built_in = [{"name": n, "criteria": {}, "roles": list(BUILT_IN_ROLES[n]), "sla_minutes": None,
                     "description": "", "built_in": True} for n in BUILT_IN_QUEUES if n not in names]
        return defined + built_in

    def _forbidden_queues(self, s: Session, reviewer: Reviewer) -> list[str]:
        """Queue names this reviewer's role may not work (everything else, named or not, is open to them)."""
        out = [n for n, roles in BUILT_IN_ROLES.items() if roles and reviewer.role not in roles]
        for name, roles in s.execute(select(ReviewQueue.name, ReviewQueue.roles)
                                     .where(ReviewQueue.organisation_id == reviewer.organisation_id)):
            if roles and reviewer.role not in roles:
                out.append(name)
            elif name in out:
                out.remove(name)  # an organisation may open a built-in queue to more roles
        return out

    def summary(self, reviewer: Reviewer) -> list[dict[str, Any]]:
        """Per queue this reviewer may work: open and leased counts, the oldest open item's age, SLA breaches."""
        now = utcnow()
        with self.db.session() as s:
            forbidden = self._forbidden_queues(s, reviewer)
            sla = dict(s.execute(select(ReviewQueue.name, ReviewQueue.sla_minutes)
                                 .where(ReviewQueue.organisation_id == reviewer.organisation_id)).all())
            rows = s.execute(
                select(ReviewItem.queue, ReviewItem.status, func.count(), func.min(ReviewItem.created_at))
                .where(ReviewItem.organisation_id == reviewer.organisation_id,
                       ReviewItem.status.in_(("open", "leased")))
                .group_by(ReviewItem.queue, ReviewItem.status)
            ).all()
            out: dict[str, dict[str, Any]] = {}
            for queue, status, n, oldest in rows:
                if queue in forbidden:
                    continue
                q = out.setdefault(queue, {"queue": queue, "open": 0, "leased": 0, "oldest_at": None,
                                           "sla_minutes": sla.get(queue), "sla_breaches": 0})
                q[status] += n
                if oldest is not None and (q["oldest_at"] is None or as_utc(oldest) < q["oldest_at"]):
                    q["oldest_at"] = as_utc(oldest)
            for name, q in out.items():
                if q["sla_minutes"]:
                    cutoff = now - timedelta(minutes=q["sla_minutes"])
                    q["sla_breaches"] = s.scalar(
                        select(func.count()).select_from(ReviewItem).where(
                            ReviewItem.organisation_id == reviewer.organisation_id, ReviewItem.queue == name,
                            ReviewItem.status.in_(("open", "leased")), ReviewItem.created_at < cutoff)) or 0
        for q in out.values():
            q["oldest_age_seconds"] = (now - q["oldest_at"]).total_seconds() if q["oldest_at"] else None
            q["oldest_at"] = _iso(q["oldest_at"])
        return sorted(out.values(), key=lambda q: q["queue"])

    # -- leasing -----------------------------------------------------------------------------------------------------
    def next_item(self, reviewer: Reviewer, queue: str | None = None) -> ItemInfo | None:
        """The item this reviewer works on next, leased to them: the one they already hold (unexpired) if any, else
        the highest-priority, oldest available item of the queues their role may work. None when there is none."""
        now = utcnow()
        with self.db.session() as s:
            forbidden = self._forbidden_queues(s, reviewer)
            if queue is not None and queue in forbidden:
                raise Forbidden(f"your role may not work queue {queue!r}", code="queue_forbidden")
            held = select(ReviewItem).where(
                ReviewItem.organisation_id == reviewer.organisation_id, ReviewItem.status == "leased",
                ReviewItem.leased_by == reviewer.user_id, ReviewItem.lease_expires_at > now)
            if queue is not None:
                held = held.where(ReviewItem.queue == queue)
            mine = s.scalars(held.order_by(ReviewItem.priority.desc(), ReviewItem.id).limit(1)).first()
            if mine is not None:
                mine.lease_expires_at = now + self.lease
                return _info(mine)
            available = [self._available(now, reviewer, forbidden, queue, status) for status in ("open", "leased")]
            for candidates in available:
                if s.get_bind().dialect.name == "postgresql":
                    # A locking CTE runs once. (``id IN (subquery ... LIMIT 1)`` may be re-evaluated while the UPDATE
                    # runs and, its first row now leased, hand out a second one.)
                    picked = candidates.with_for_update(skip_locked=True).cte("picked").prefix_with("MATERIALIZED")
                    target = ReviewItem.id == picked.c.id
                else:  # SQLite: one writer at a time; the subquery is evaluated once into a temporary table
                    target = ReviewItem.id.in_(candidates.scalar_subquery())
                got = s.execute(
                    update(ReviewItem)
                    .where(target, or_(ReviewItem.status == "open",
                                       and_(ReviewItem.status == "leased", ReviewItem.lease_expires_at <= now)))
                    .values(status="leased", leased_by=reviewer.user_id, lease_expires_at=now + self.lease)
                    .returning(ReviewItem.id)
                    .execution_options(synchronize_session=False)
                ).scalar()
                if got is not None:
                    row = s.get(ReviewItem, got)
                    assert row is not None
                    s.refresh(row)
                    return _info(row)
        return None

    def _available(self, now: datetime, reviewer: Reviewer, forbidden: list[str], queue: str | None, status: str):  # type: ignore[no-untyped-def]
        """Open items, or leased ones whose lease expired (a second, rarer pass), best first."""
        q = select(ReviewItem.id).where(ReviewItem.organisation_id == reviewer.organisation_id,
                                        ReviewItem.status == status)
        if status == "leased":
            q = q.where(ReviewItem.lease_expires_at <= now)
        q = q.where(or_(ReviewItem.excluded_user_id.is_(None), ReviewItem.excluded_user_id != reviewer.user_id))
        if queue is not None:
            q = q.where(ReviewItem.queue == queue)
        elif forbidden:
            q = q.where(ReviewItem.queue.not_in(forbidden))
        return q.order_by(ReviewItem.priority.desc(), ReviewItem.created_at, ReviewItem.id).limit(1)

    def open_item(self, reviewer: Reviewer, item_id: int) -> ItemInfo:
        """Take a specific item by id (from a list, or a link): leased to this reviewer when available. Another
        organisation's item is not found; an item another reviewer holds is a Conflict ``item_leased``."""
        now = utcnow()
        with self.db.session() as s:
            row = self._item(s, reviewer, item_id)
            if row.status in ("done", "cancelled"):
                return _info(row)
            if row.excluded_user_id == reviewer.user_id:
                raise Forbidden("you made the decision under review here; another reviewer must decide it",
                                code="own_decision")
            if row.status == "leased" and row.leased_by != reviewer.user_id and as_utc(row.lease_expires_at) > now:
                raise Conflict("another reviewer is working on this item", code="item_leased")
            res = s.execute(
                update(ReviewItem).where(ReviewItem.id == row.id, ReviewItem.status.in_(("open", "leased")),
                                         or_(ReviewItem.leased_by.is_(None), ReviewItem.leased_by == reviewer.user_id,
                                             ReviewItem.lease_expires_at <= now))
                .values(status="leased", leased_by=reviewer.user_id, lease_expires_at=now + self.lease)
                .execution_options(synchronize_session=False))
            if res.rowcount != 1:
                raise Conflict("another reviewer took this item", code="item_leased")
            s.refresh(row)
            return _info(row)

    def _item(self, s: Session, reviewer: Reviewer, item_id: int) -> ReviewItem:
        row = s.get(ReviewItem, item_id)
        if row is None or row.organisation_id != reviewer.organisation_id:
            raise NotFound(f"no review item {item_id}", code="review_item_not_found")
        if row.queue in self._forbidden_queues(s, reviewer):
            raise NotFound(f"no review item {item_id}", code="review_item_not_found")
        return row

    def get_item(self, reviewer: Reviewer, item_id: int) -> ItemInfo:
        with self.db.session() as s:
            return _info(self._item(s, reviewer, item_id))

    def renew(self, reviewer: Reviewer, item_id: int) -> ItemInfo:
        """Extend this reviewer's lease (the open item page calls it); LeaseLost when they no longer hold it."""
        now = utcnow()
        with self.db.session() as s:
            self._item(s, reviewer, item_id)
            res = s.execute(update(ReviewItem).where(
                ReviewItem.id == item_id, ReviewItem.status == "leased", ReviewItem.leased_by == reviewer.user_id,
                ReviewItem.lease_expires_at > now).values(lease_expires_at=now + self.lease)
                .execution_options(synchronize_session=False))
            if res.rowcount != 1:
                raise LeaseLost("your lease on this item expired; open it again", item_id=item_id)
            return _info(s.get(ReviewItem, item_id))  # type: ignore[arg-type]

    def release(self, reviewer: Reviewer, item_id: int) -> None:
        """Give the item back to its queue (skip)."""
        with self.db.session() as s:
            self._item(s, reviewer, item_id)
            s.execute(update(ReviewItem).where(
                ReviewItem.id == item_id, ReviewItem.status == "leased", ReviewItem.leased_by == reviewer.user_id)
                .values(status="open", leased_by=None, lease_expires_at=None)
                .execution_options(synchronize_session=False))

    # -- deciding ----------------------------------------------------------------------------------------------------
    def decide(
        self,
        reviewer: Reviewer,
        item_id: int,
        verdict: str,
        *,
        category: str | None = None,
        policy_reference: str | None = None,
        action: str | None = None,
        restrict_in: list[str] | None = None,
        note: str = "",
        bank: str | None = None,
        share_with_forum: bool = False,
        disable_bank_entries: bool = False,
    ) -> dict[str, Any]:
        """Record a reviewer's decision on a leased item (see the module docstring). Returns the review decision,
        the content decision it wrote (if any) and the bank entry it created (if any)."""
        note = (note or "").strip()
        if len(note) > MAX_NOTE:
            raise InvalidInput(f"a note is at most {MAX_NOTE} characters", code="note_too_long")
        now = utcnow()
        banked: dict[str, Any] | None = None
        with self.db.session() as s:
            # Take the row for this transaction only if the lease is still ours (a row lock on PostgreSQL, the write
            # lock on SQLite): a lease that runs out while we write cannot be handed to someone else meanwhile.
            held = s.execute(update(ReviewItem).where(
                ReviewItem.id == item_id, ReviewItem.organisation_id == reviewer.organisation_id,
                ReviewItem.status == "leased", ReviewItem.leased_by == reviewer.user_id,
                ReviewItem.lease_expires_at > now).values(lease_expires_at=ReviewItem.lease_expires_at)
                .execution_options(synchronize_session=False)).rowcount
            row = self._item(s, reviewer, item_id)
            if held != 1:
                self._check_lease(row, reviewer, now)
                raise LeaseLost("you no longer hold this item; open it again", item_id=row.id)
            if row.excluded_user_id == reviewer.user_id:
                raise Forbidden("you made the decision under review here; another reviewer must decide it",
                                code="own_decision")
            if row.kind == "escalation" and not reviewer.is_lead:
                raise Forbidden("only a lead decides escalations", code="lead_only")
            item = s.get(ContentItem, row.content_id)
            assert item is not None
            if row.kind == "appeal":
                result = self._decide_appeal(s, reviewer, row, item, verdict, note, disable_bank_entries, now)
            else:
                result = self._decide_review(s, reviewer, row, item, verdict, category, policy_reference, action,
                                             restrict_in, note, bank, share_with_forum, now)
            row.status, row.done_at, row.lease_expires_at = "done", now, None
            s.flush()
        if result.get("bank_request"):
            banked = self._bank(reviewer, result.pop("bank_request"))
            result["bank_entry"] = banked
        result.pop("bank_request", None)
        return result

    @staticmethod
    def _check_lease(row: ReviewItem, reviewer: Reviewer, now: datetime) -> None:
        if row.status == "done":
            raise Conflict("this item has already been decided", code="already_decided")
        if row.status != "leased" or row.leased_by != reviewer.user_id:
            raise LeaseLost("you do not hold this item (its lease expired and another reviewer took it, or you "
                            "never opened it); open it again", item_id=row.id)
        if as_utc(row.lease_expires_at) <= now:
            raise LeaseLost("your lease on this item expired; open it again to decide", item_id=row.id)

    def _decide_review(self, s: Session, reviewer: Reviewer, row: ReviewItem, item: ContentItem, verdict: str,
                       category: str | None, policy_reference: str | None, action: str | None,
                       restrict_in: list[str] | None, note: str, bank: str | None, share_with_forum: bool,
                       now: datetime) -> dict[str, Any]:
        if verdict not in VERDICTS:
            raise InvalidInput(f"unknown verdict {verdict!r}; one of: {', '.join(VERDICTS)}", code="invalid_verdict")
        jurisdictions: list[str] = []
        if verdict == "violating":
            if not category or category not in CATEGORIES:
                raise InvalidInput("a violating decision needs a category from the taxonomy",
                                   code="category_required", allowed=list(CATEGORIES))
            if not policy_reference or not policy_reference.strip():
                raise InvalidInput("a violating decision needs the policy it violates (e.g. 'TOS 4.2 terrorism')",
                                   code="policy_reference_required")
            action = action or "remove"
            if action not in ACTIONS:
                raise InvalidInput(f"action must be one of {', '.join(ACTIONS)}", code="invalid_action")
            if action == "restrict":
                from bastion.intake.service import validate_jurisdiction

                jurisdictions = sorted({validate_jurisdiction(j) for j in (restrict_in or [])})
                if not jurisdictions:
                    raise InvalidInput("restricting needs the jurisdictions to restrict in",
                                       code="restrict_in_required")
        elif bank:
            raise InvalidInput("only a violating decision banks the content's hashes", code="bank_needs_violation")
        if row.kind == "qa":
            return self._decide_qa(s, reviewer, row, verdict, category, note, now)

        rd = ReviewDecision(item_id=row.id, organisation_id=row.organisation_id, content_id=item.id,
                            reviewer_id=reviewer.user_id, verdict=verdict,
                            action=action if verdict == "violating" else None,
                            category=category if verdict == "violating" else None,
                            policy_reference=(policy_reference or "").strip()[:200] or None, restrict_in=jurisdictions,
                            note=note, share_with_forum=bool(share_with_forum and bank),
                            seconds=_seconds_since(row, now), created_at=now)
        s.add(rd)
        s.flush()
        decision = None
        if verdict == "escalate_lead":
            enqueue(s, item, s.get(Decision, row.decision_id) if row.decision_id else None, kind="escalation",
                    queue=ESCALATIONS, deadline_at=row.deadline_at, severity=row.severity)
        else:
            outcome = {"violating": action, "not_violating": "allow", "escalate_law_enforcement": "escalate"}[verdict]
            decision = self._write_decision(s, reviewer, item, outcome, jurisdictions, rd, now,
                                            reason=_reason(verdict, category, policy_reference, note))
            rd.decision_id = decision.id
            from bastion.compliance import escalation, orders  # authorities' orders and escalations (issue 6)

            orders.review_decided(s, row, decision, reviewer.actor)
            if verdict == "escalate_law_enforcement":
                escalation.open_escalation(s, item, decision, reviewer.actor)
            if row.kind == "review" and verdict in ("violating", "not_violating"):
                share = _qa_share(s, row.organisation_id)
                if qa_sampled(row.organisation_id, rd.id, share):
                    enqueue(s, item, None, kind="qa", queue=QA, excluded_user_id=reviewer.user_id, parent_id=row.id,
                            severity=row.severity)
        audit.append(s, reviewer.actor, "review_decided", f"content:{item.id}",
                     {"review_item": row.id, "kind": row.kind, "verdict": verdict, "action": rd.action,
                      "category": rd.category, "policy_reference": rd.policy_reference, "bank": bank},
                     organisation_id=row.organisation_id)
        _emit(s, item, "review.completed", {"review": _review_dict(rd, row), "content_id": item.id,
                                            "external_id": item.external_id})
        out: dict[str, Any] = {"review": _review_dict(rd, row),
                               "decision": _decision_dict(decision) if decision is not None else None}
        if bank and verdict == "violating":
            out["bank_request"] = {"bank": bank, "content_id": item.id, "review_decision_id": rd.id,
                                   "category": category, "share_with_forum": bool(share_with_forum),
                                   "note": note, "signals": list(item.signals or []),
                                   "content_type": item.content_type}
        return out

    def _decide_qa(self, s: Session, reviewer: Reviewer, row: ReviewItem, verdict: str, category: str | None,
                   note: str, now: datetime) -> dict[str, Any]:
        first = s.scalars(select(ReviewDecision).where(ReviewDecision.item_id == row.parent_id)).first()
        agrees = None
        if first is not None:
            agrees = first.verdict == verdict and (verdict != "violating" or first.category == category)
        rd = ReviewDecision(item_id=row.id, organisation_id=row.organisation_id, content_id=row.content_id,
                            reviewer_id=reviewer.user_id, verdict=verdict,
                            category=category if verdict == "violating" else None, note=note,
                            qa_of=first.id if first else None, agrees=agrees, seconds=_seconds_since(row, now),
                            created_at=now)
        s.add(rd)
        s.flush()
        if agrees is False:  # two reviewers disagree: a lead settles it
            item = s.get(ContentItem, row.content_id)
            assert item is not None
            enqueue(s, item, None, kind="escalation", queue=ESCALATIONS, severity=row.severity)
        audit.append(s, reviewer.actor, "qa_decided", f"content:{row.content_id}",
                     {"review_item": row.id, "verdict": verdict, "category": rd.category, "agrees": agrees,
                      "checked": first.id if first else None}, organisation_id=row.organisation_id)
        return {"review": _review_dict(rd, row), "decision": None, "agrees": agrees}

    def _decide_appeal(self, s: Session, reviewer: Reviewer, row: ReviewItem, item: ContentItem, verdict: str,
                       note: str, disable_bank_entries: bool, now: datetime) -> dict[str, Any]:
        if verdict not in APPEAL_VERDICTS:
            raise InvalidInput(f"an appeal is decided with one of: {', '.join(APPEAL_VERDICTS)}",
                               code="invalid_verdict")
        appeal = s.get(Appeal, row.appeal_id) if row.appeal_id else None
        assert appeal is not None
        if appeal.original_reviewer_id == reviewer.user_id:
            raise Forbidden("you made the decision under appeal; another reviewer must decide it",
                            code="own_decision")
        rd = ReviewDecision(item_id=row.id, organisation_id=row.organisation_id, content_id=item.id,
                            reviewer_id=reviewer.user_id, verdict=verdict, note=note,
                            action="allow" if verdict == "overturn" else None, seconds=_seconds_since(row, now),
                            created_at=now)
        s.add(rd)
        s.flush()
        decision = None
        disabled: list[int] = []
        if verdict == "overturn":
            decision = self._write_decision(s, reviewer, item, "allow", [], rd, now,
                                            reason=f"appeal {appeal.id} upheld by review: content reinstated"
                                            + (f" ({note})" if note else ""), reinstated=True)
            rd.decision_id = decision.id
            if disable_bank_entries:
                disabled = self._disable_causes(s, reviewer, item.id, appeal.decision_id)
        appeal.status = "overturned" if verdict == "overturn" else "upheld"
        appeal.decided_by, appeal.decided_at = reviewer.user_id, now
        audit.append(s, reviewer.actor, "appeal_decided", f"appeal:{appeal.id}",
                     {"content": item.id, "verdict": verdict, "disabled_bank_entries": disabled},
                     organisation_id=row.organisation_id)
        _emit(s, item, "review.completed", {"review": _review_dict(rd, row), "content_id": item.id,
                                            "external_id": item.external_id, "appeal_id": appeal.id,
                                            "appeal_status": appeal.status})
        return {"review": _review_dict(rd, row), "decision": _decision_dict(decision) if decision else None,
                "appeal": _appeal_dict(appeal), "disabled_bank_entries": disabled}

    def _disable_causes(self, s: Session, reviewer: Reviewer, content_id: int, decision_id: int) -> list[int]:
        """Disable (in this transaction) the organisation's own bank entries behind the appealed decision: those
        its evidence matched and those a reviewer banked from this content. Shared banks are left alone."""
        from bastion.storage.models import Bank, BankChange, BankEntry

        appealed = s.get(Decision, decision_id)
        entry_ids = {int(m["entry_id"]) for m in (appealed.evidence or {}).get("matches", [])} if appealed else set()
        entry_ids |= {e for e in s.scalars(select(ReviewDecision.bank_entry_id).where(
            ReviewDecision.content_id == content_id, ReviewDecision.bank_entry_id.is_not(None))) if e is not None}
        disabled = []
        for entry_id in sorted(entry_ids):
            entry = s.get(BankEntry, entry_id)
            bank = s.get(Bank, entry.bank_id) if entry else None
            if entry is None or bank is None or bank.organisation_id != reviewer.organisation_id or not entry.enabled:
                continue
            entry.enabled = False
            s.add(BankChange(kind="entry_disabled", bank_id=bank.id, entry_id=entry.id, at=utcnow()))
            audit.append(s, reviewer.actor, "entry_disabled", f"entry:{entry.id}",
                         {"bank_id": bank.id, "reason": "appeal overturned"}, organisation_id=bank.organisation_id)
            disabled.append(entry.id)
        return disabled

    def _write_decision(self, s: Session, reviewer: Reviewer, item: ContentItem, outcome: str,
                        restrict_in: list[str], rd: ReviewDecision, now: datetime, *, reason: str,
                        reinstated: bool = False) -> Decision:
        from bastion.decisions.pipeline import content_summary, decision_dict

        previous = _latest_decision(s, item.id)
        d = Decision(content_id=item.id, organisation_id=item.organisation_id, version=_next_version(s, item.id),
                     outcome=outcome, restrict_in=restrict_in, rule=None,
                     policy_version=previous.policy_version if previous else None, automated=False,
                     actor=reviewer.actor, reason=reason[:2000],
                     evidence={"review_decision_id": rd.id, "verdict": rd.verdict, "category": rd.category,
                               "policy_reference": rd.policy_reference,
                               "previous": {"version": previous.version, "outcome": previous.outcome}
                               if previous else None},
                     created_at=now)
        s.add(d)
        s.flush()
        audit.append(s, reviewer.actor, "decision_changed", f"content:{item.id}",
                     {"version": d.version, "outcome": outcome, "previous": previous.outcome if previous else None,
                      "reinstated": reinstated}, organisation_id=item.organisation_id)
        _emit(s, item, "decision.changed", {"content": content_summary(item), "decision": decision_dict(d),
                                            "previous_outcome": previous.outcome if previous else None,
                                            "reinstated": reinstated})
        return d

    def _bank(self, reviewer: Reviewer, req: dict[str, Any]) -> dict[str, Any]:
        """Add the decided content's hashes to a bank of the reviewer's organisation (after the decision commits:
        a hash already banked links to its entry). The review decision records the entry."""
        from bastion.banks.service import BankService
        from bastion.signals.base import Signal

        signals = [Signal(d["type"], d["value"], d.get("quality")) for d in req["signals"]
                   if d.get("type") not in ("text_embedding",)]
        labels: dict[str, Any] = {"category": req["category"]}
        if req["share_with_forum"]:
            labels["share_with_forum"] = "yes"
        service = BankService(self.db, reviewer.actor, organisation_id=reviewer.organisation_id)
        try:
            entry = service.add_entry(req["bank"], signals, labels, source="own_review", note=req["note"][:500],
                                      added_by=reviewer.actor, origin=f"content:{req['content_id']}",
                                      content_type=req["content_type"])
            entry_id, created = entry.id, True
        except Conflict as exc:
            if exc.code != "already_banked":
                raise
            entry_id, created = int(exc.details["entry_id"]), False
        with self.db.session() as s:
            s.execute(update(ReviewDecision).where(ReviewDecision.id == req["review_decision_id"])
                      .values(bank_entry_id=entry_id))
        return {"bank": req["bank"], "entry_id": entry_id, "created": created}

    def check_bank(self, reviewer: Reviewer, bank: str) -> None:
        """Raise (before deciding) when ``bank`` is not a bank this reviewer's organisation can write."""
        from bastion.banks.service import BankService

        BankService(self.db, reviewer.actor, organisation_id=reviewer.organisation_id).get_bank(bank, writable=True)

    # -- appeals -----------------------------------------------------------------------------------------------------
    def create_appeal(self, actor: str, organisation_id: int, content_id: int, *, reason: str = "",
                      appellant_id: str | None = None) -> dict[str, Any]:
        """A user's appeal against the standing decision on their content (sent by the platform). Only removals,
        restrictions and escalations are appealable; one open appeal per content."""
        reason = (reason or "").strip()
        if len(reason) > MAX_REASON:
            raise InvalidInput(f"an appeal's reason is at most {MAX_REASON} characters", code="reason_too_long")
        with self.db.session() as s:
            item = s.get(ContentItem, content_id)
            if item is None or item.organisation_id != organisation_id:
                raise NotFound(f"no content {content_id}", code="content_not_found")
            decision = _latest_decision(s, item.id)
            if decision is None or decision.outcome not in APPEALABLE_OUTCOMES:
                raise Conflict("only a removal, restriction or escalation can be appealed; this content's standing "
                               f"decision is {decision.outcome if decision else 'pending'!r}",
                               code="not_appealable")
            if s.scalar(select(Appeal.id).where(Appeal.content_id == item.id, Appeal.status == "open")):
                raise Conflict("this content already has an open appeal", code="appeal_exists")
            original = s.scalar(select(ReviewDecision.reviewer_id).where(
                ReviewDecision.decision_id == decision.id)) if not decision.automated else None
            appeal = Appeal(organisation_id=organisation_id, content_id=item.id, decision_id=decision.id,
                            appellant_id=appellant_id, reason=reason, original_reviewer_id=original)
            s.add(appeal)
            s.flush()
            enqueue(s, item, decision, kind="appeal", queue=APPEALS, excluded_user_id=original, appeal_id=appeal.id)
            audit.append(s, actor, "appeal_received", f"appeal:{appeal.id}",
                         {"content": item.id, "decision_version": decision.version}, organisation_id=organisation_id)
            return _appeal_dict(appeal)

    def list_appeals(
        self, organisation_id: int, *, status: str | None = None, limit: int = 200
    ) -> list[dict[str, Any]]:
        """The organisation's appeals, newest first, for leads: each with the platform's content id, the decision
        appealed, who made it (original reviewer, or automated), where the appeal stands in the appeals queue (open,
        or leased to whom) and, once decided, who decided it and how. ``status``: open, upheld or overturned."""
        if status is not None and status not in APPEAL_STATUSES:
            raise InvalidInput(f"unknown appeal status {str(status)[:30]!r}; one of {', '.join(APPEAL_STATUSES)}",
                               code="invalid_status")
        with self.db.session() as s:
            q = (select(Appeal, ContentItem.external_id, Decision.outcome, Decision.version, Decision.automated)
                 .join(ContentItem, ContentItem.id == Appeal.content_id)
                 .join(Decision, Decision.id == Appeal.decision_id)
                 .where(Appeal.organisation_id == organisation_id))
            if status is not None:
                q = q.where(Appeal.status == status)
            rows = s.execute(q.order_by(Appeal.created_at.desc(), Appeal.id.desc()).limit(max(1, min(limit, 1000))))
            rows = rows.all()
            items = {r.appeal_id: r for r in s.scalars(select(ReviewItem).where(
                ReviewItem.appeal_id.in_([a.id for a, *_ in rows] or [-1])))}
            names = dict(s.execute(select(User.id, User.email).where(User.organisation_id == organisation_id)).all())
        out = []
        for a, external_id, outcome, version, automated in rows:
            item = items.get(a.id)
            out.append({
                **_appeal_dict(a), "external_id": external_id,
                "appealed": {"outcome": outcome, "version": version, "automated": bool(automated),
                             "reviewer": names.get(a.original_reviewer_id) if a.original_reviewer_id else None},
                "decided_by": names.get(a.decided_by) if a.decided_by else None,
                "item_id": item.id if item is not None else None,
                "queue_status": item.status if item is not None else None,
                "leased_to": names.get(item.leased_by) if item is not None and item.status == "leased" else None,
            })
        return out

    def appeal_counts(self, organisation_id: int) -> dict[str, int]:
        """How many of the organisation's appeals are open, upheld and overturned."""
        with self.db.session() as s:
            rows = s.execute(select(Appeal.status, func.count()).where(Appeal.organisation_id == organisation_id)
                             .group_by(Appeal.status)).all()
        counts = dict.fromkeys(APPEAL_STATUSES, 0)
        counts.update({status: n for status, n in rows})
        return counts

    def get_appeal(self, organisation_id: int, appeal_id: int) -> dict[str, Any]:
        with self.db.session() as s:
            a = s.get(Appeal, appeal_id)
            if a is None or a.organisation_id != organisation_id:
                raise NotFound(f"no appeal {appeal_id}", code="appeal_not_found")
            return _appeal_dict(a)

    # -- quality assurance -------------------------------------------------------------------------------------------
    def agreement(self, organisation_id: int, *, since: datetime | None = None) -> dict[str, Any]:
        """QA agreement per first reviewer and per category (the first reviewer's), for leads."""
        with self.db.session() as s:
            first = ReviewDecision.__table__.alias("first")
            q = (select(ReviewDecision.agrees, first.c.reviewer_id, first.c.category, first.c.verdict)
                 .join(first, first.c.id == ReviewDecision.qa_of)
                 .where(ReviewDecision.organisation_id == organisation_id, ReviewDecision.agrees.is_not(None)))
            if since is not None:
                q = q.where(ReviewDecision.created_at >= since)
            rows = s.execute(q).all()
            emails = dict(s.execute(select(User.id, User.email).where(User.organisation_id == organisation_id)).all())

        def tally(key_of) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
            acc: dict[Any, list[int]] = {}
            for r in rows:
                a = acc.setdefault(key_of(r), [0, 0])
                a[0] += 1
                a[1] += bool(r.agrees)
            return [{"key": k, "checked": n, "agreed": ok, "agreement": round(ok / n, 3)}
                    for k, (n, ok) in sorted(acc.items(), key=lambda kv: str(kv[0]))]

        per_reviewer = tally(lambda r: emails.get(r.reviewer_id, f"user {r.reviewer_id}"))
        per_category = tally(lambda r: r.category or ("not violating" if r.verdict == "not_violating" else r.verdict))
        total = len(rows)
        return {"checked": total, "agreed": sum(bool(r.agrees) for r in rows),
                "agreement": round(sum(bool(r.agrees) for r in rows) / total, 3) if total else None,
                "per_reviewer": per_reviewer, "per_category": per_category}

    def set_qa_share(self, actor: str, organisation_id: int, share: float) -> float:
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
            raise InvalidInput("the QA share is a number from 0 to 1 (e.g. 0.1 for one decision in ten)",
                               code="invalid_qa_share")
        with self.db.session() as s:
            org = s.get(Organisation, organisation_id)
            if org is None:
                raise NotFound(f"no organisation {organisation_id}")
            config = dict(org.config or {})
            config["review"] = {**dict(config.get("review") or {}), "qa_share": float(share)}
            org.config = config
            audit.append(s, actor, "organisation_updated", f"organisation:{organisation_id}",
                         {"review.qa_share": float(share)}, organisation_id=organisation_id)
        return float(share)

    # -- history -----------------------------------------------------------------------------------------------------
    def content_history(self, organisation_id: int, content_id: int) -> dict[str, Any]:
        """Every decision and review decision on one content item (oldest first), and its appeals."""
        from bastion.decisions.pipeline import decision_dict

        with self.db.session() as s:
            item = s.get(ContentItem, content_id)
            if item is None or item.organisation_id != organisation_id:
                raise NotFound(f"no content {content_id}", code="content_not_found")
            decisions = [decision_dict(d) for d in s.scalars(
                select(Decision).where(Decision.content_id == content_id).order_by(Decision.version))]
            reviews = s.execute(
                select(ReviewDecision, ReviewItem).join(ReviewItem, ReviewItem.id == ReviewDecision.item_id)
                .where(ReviewDecision.content_id == content_id).order_by(ReviewDecision.id)).all()
            appeals = [_appeal_dict(a) for a in s.scalars(
                select(Appeal).where(Appeal.content_id == content_id).order_by(Appeal.id))]
            return {"decisions": decisions, "reviews": [_review_dict(rd, ri) for rd, ri in reviews],
                    "appeals": appeals}

    def purge_done(self, older_than: timedelta) -> int:
        """Delete finished review items older than ``older_than`` with no review decision (cancelled ones)."""
        with self.db.session() as s:
            return s.execute(delete(ReviewItem).where(ReviewItem.status == "cancelled",
                                                      ReviewItem.done_at < utcnow() - older_than)).rowcount


def _qa_share(s: Session, organisation_id: int) -> float:
    config = s.scalar(select(Organisation.config).where(Organisation.id == organisation_id)) or {}
    try:
        return float((config.get("review") or {}).get("qa_share", DEFAULT_QA_SHARE))
    except (TypeError, ValueError):
        return DEFAULT_QA_SHARE


def _seconds_since(row: ReviewItem, now: datetime) -> float:
    """Time to decision: from the item entering its queue to the decision."""
    return max(0.0, round((now - as_utc(row.created_at)).total_seconds(), 3))


def _reason(verdict: str, category: str | None, policy_reference: str | None, note: str) -> str:
    if verdict == "violating":
        return f"reviewed: violating ({category}; {policy_reference})"
    if verdict == "escalate_law_enforcement":
        return "reviewed: imminent threat to life, escalated to law enforcement" + (f" ({note[:200]})" if note else "")
    return "reviewed: not violating"


def _review_dict(rd: ReviewDecision, row: ReviewItem) -> dict[str, Any]:
    return {"id": rd.id, "item_id": row.id, "kind": row.kind, "queue": row.queue, "verdict": rd.verdict,
            "action": rd.action, "category": rd.category, "policy_reference": rd.policy_reference,
            "restrict_in": list(rd.restrict_in or []), "note": rd.note, "reviewer_id": rd.reviewer_id,
            "bank_entry_id": rd.bank_entry_id, "share_with_forum": rd.share_with_forum, "qa_of": rd.qa_of,
            "agrees": rd.agrees, "decided_at": _iso(rd.created_at)}


def _decision_dict(d: Decision | None) -> dict[str, Any] | None:
    from bastion.decisions.pipeline import decision_dict

    return decision_dict(d) if d is not None else None


def _appeal_dict(a: Appeal) -> dict[str, Any]:
    return {"id": a.id, "content_id": a.content_id, "decision_id": a.decision_id, "appellant_id": a.appellant_id,
            "reason": a.reason, "status": a.status, "created_at": _iso(a.created_at),
            "decided_at": _iso(a.decided_at)}


def _emit(session: Session, item: ContentItem, event_type: str, payload: dict[str, Any]) -> None:
    from bastion.webhooks import emit

    emit(session, item.organisation_id, event_type, payload)


def _queue_dict(q: ReviewQueue) -> dict[str, Any]:
    return {"name": q.name, "criteria": dict(q.criteria or {}), "roles": list(q.roles or []),
            "sla_minutes": q.sla_minutes, "description": q.description, "built_in": False}


def reviewer_for(db: Database, organisation_id: int, user_id: int) -> Reviewer:
    """The :class:`Reviewer` for a user id (NotFound when not in the organisation or disabled)."""
    with db.session() as s:
        u = s.get(User, user_id)
        if u is None or u.organisation_id != organisation_id or u.disabled:
            raise NotFound(f"no user {user_id}", code="user_not_found")
        return Reviewer(u.id, u.organisation_id, u.role, u.email)


__all__ = ["ItemInfo", "LeaseLost", "ReviewService", "Reviewer", "enqueue", "qa_sampled", "reviewer_for"]
