"""Complaints against removals (TCO Art. 10, DSA Art. 20), sent by the platform for its user.

A complaint *is* an appeal with legal strings attached, so it reuses the appeal machinery of
:mod:`bastion.review.service` instead of a second one: lodging one writes an :class:`~bastion.storage.models.Appeal`
and its review item in the ``appeals`` queue (excluded for the reviewer who made the decision complained of, with
the complaint's deadline as the item's deadline, which raises its priority), and a reviewer decides it there like any
appeal. Overturning reinstates the content: the new ``allow`` decision, its audit record and the ``decision.changed``
event with ``"reinstated": true`` that tells the platform to restore it, all in one transaction.

This module adds what the law adds: the regime (``tco`` or ``dsa``), the two-week deadline
(``BASTION_COMPLAINT_DEADLINE_DAYS``), a ``complaint.reminder`` event ``BASTION_COMPLAINT_REMINDER_DAYS`` before it
and a ``complaint.overdue`` event once it has passed (:func:`remind_due`, run by the workers' sweep), and the
outcome and reinstatement as transparency reports count them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bastion import audit
from bastion.errors import Conflict, InvalidInput, NotFound
from bastion.settings import Settings
from bastion.storage.db import Database
from bastion.storage.models import (
    Appeal,
    Complaint,
    ContentItem,
    Decision,
    ReviewDecision,
    ReviewItem,
    as_utc,
    utcnow,
)

REGIMES = ("tco", "dsa")
COMPLAINABLE = ("remove", "restrict")
MAX_REASON = 5000
# the appeal's status, as a complaint's outcome
OUTCOMES = {"open": "pending", "upheld": "rejected", "overturned": "reinstated"}


def _iso(dt: datetime | None) -> str | None:
    return as_utc(dt).isoformat().replace("+00:00", "Z") if dt is not None else None


def complaint_dict(s: Session, c: Complaint, now: datetime | None = None) -> dict[str, Any]:
    now = now or utcnow()
    appeal = s.get(Appeal, c.appeal_id)
    status = appeal.status if appeal is not None else "open"
    reinstated = None
    if status == "overturned":
        row = s.execute(
            select(Decision.version, Decision.created_at)
            .join(ReviewDecision, ReviewDecision.decision_id == Decision.id)
            .join(ReviewItem, ReviewItem.id == ReviewDecision.item_id)
            .where(ReviewItem.appeal_id == c.appeal_id)
        ).first()
        if row is not None:
            reinstated = {"decision_version": row.version, "at": _iso(row.created_at)}
    decided_at = appeal.decided_at if appeal is not None else None
    return {
        "id": c.id,
        "content_id": c.content_id,
        "appeal_id": c.appeal_id,
        "regime": c.regime,
        "complainant_id": c.complainant_id,
        "reason": appeal.reason if appeal else "",
        "outcome": OUTCOMES.get(status, status),
        "created_at": _iso(c.created_at),
        "deadline_at": _iso(c.deadline_at),
        "decided_at": _iso(decided_at),
        "overdue": status == "open" and as_utc(c.deadline_at) <= now,
        "decided_late": decided_at is not None and as_utc(decided_at) > as_utc(c.deadline_at),
        "reminded_at": _iso(c.reminded_at),
        "reinstatement": reinstated,
    }


class ComplaintService:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    def lodge(
        self,
        actor: str,
        organisation_id: int,
        content_id: int,
        *,
        regime: str,
        reason: str = "",
        complainant_id: str | None = None,
        now: datetime | None = None,
    ) -> dict[str, Any]:
        """A complaint against the removal or restriction in force on ``content_id``: queued for a reviewer other
        than the one who decided, due in ``complaint_deadline_days``. One transaction; nothing is written on error."""
        from bastion.review.routing import APPEALS
        from bastion.review.service import enqueue

        if regime not in REGIMES:
            raise InvalidInput(
                f"regime must be one of {', '.join(REGIMES)} (TCO Art. 10 or DSA Art. 20)",
                code="invalid_regime",
                allowed=list(REGIMES),
            )
        reason = (reason or "").strip()
        if len(reason) > MAX_REASON:
            raise InvalidInput(f"a complaint's reason is at most {MAX_REASON} characters", code="reason_too_long")
        if complainant_id is not None and len(complainant_id) > 200:
            raise InvalidInput("complainant_id is at most 200 characters", code="invalid_complainant")
        now = now or utcnow()
        with self.db.session() as s:
            item = s.get(ContentItem, content_id)
            if item is None or item.organisation_id != organisation_id:
                raise NotFound(f"no content {content_id}", code="content_not_found")
            decision = s.scalars(
                select(Decision).where(Decision.content_id == item.id).order_by(Decision.version.desc()).limit(1)
            ).first()
            if decision is None or decision.outcome not in COMPLAINABLE:
                raise Conflict(
                    "only a removal or restriction in force can be complained of; this content's standing "
                    f"decision is {decision.outcome if decision else 'pending'!r}",
                    code="not_complainable",
                )
            if s.scalar(select(Appeal.id).where(Appeal.content_id == item.id, Appeal.status == "open")):
                raise Conflict("this content already has an open complaint or appeal", code="complaint_exists")
            original = (
                s.scalar(select(ReviewDecision.reviewer_id).where(ReviewDecision.decision_id == decision.id))
                if not decision.automated
                else None
            )
            appeal = Appeal(
                organisation_id=organisation_id,
                content_id=item.id,
                decision_id=decision.id,
                appellant_id=complainant_id,
                reason=reason,
                original_reviewer_id=original,
                created_at=now,
            )
            s.add(appeal)
            s.flush()
            deadline = now + timedelta(days=self.settings.complaint_deadline_days)
            complaint = Complaint(
                organisation_id=organisation_id,
                content_id=item.id,
                appeal_id=appeal.id,
                regime=regime,
                complainant_id=complainant_id,
                deadline_at=deadline,
                created_at=now,
            )
            s.add(complaint)
            s.flush()
            enqueue(
                s,
                item,
                decision,
                kind="appeal",
                queue=APPEALS,
                excluded_user_id=original,
                appeal_id=appeal.id,
                deadline_at=deadline,
            )
            audit.append(
                s,
                actor,
                "complaint_received",
                f"complaint:{complaint.id}",
                {
                    "content": item.id,
                    "regime": regime,
                    "appeal": appeal.id,
                    "decision_version": decision.version,
                    "deadline_at": _iso(deadline),
                },
                organisation_id=organisation_id,
            )
            return complaint_dict(s, complaint, now)

    def get(self, organisation_id: int, complaint_id: int) -> dict[str, Any]:
        with self.db.session() as s:
            c = s.get(Complaint, complaint_id)
            if c is None or c.organisation_id != organisation_id:
                raise NotFound(f"no complaint {complaint_id}", code="complaint_not_found")
            return complaint_dict(s, c)

    def list(self, organisation_id: int, *, open_only: bool = False, limit: int = 200) -> list[dict[str, Any]]:
        with self.db.session() as s:
            q = select(Complaint).where(Complaint.organisation_id == organisation_id)
            if open_only:
                q = q.join(Appeal, Appeal.id == Complaint.appeal_id).where(Appeal.status == "open")
            rows = s.scalars(q.order_by(Complaint.deadline_at).limit(max(1, min(limit, 1000)))).all()
            now = utcnow()
            return [complaint_dict(s, c, now) for c in rows]

    def remind_due(self, *, now: datetime | None = None) -> int:
        """Send ``complaint.reminder`` for open complaints within the reminder window of their deadline and
        ``complaint.overdue`` for those past it (each once). Returns the events sent."""
        from bastion.webhooks import emit

        now = now or utcnow()
        soon = now + timedelta(days=self.settings.complaint_reminder_days)
        sent = 0
        with self.db.session() as s:
            rows = s.scalars(
                select(Complaint)
                .join(Appeal, Appeal.id == Complaint.appeal_id)
                .where(
                    Appeal.status == "open",
                    Complaint.deadline_at <= soon,
                    (Complaint.reminded_at.is_(None)) | (Complaint.overdue_at.is_(None)),
                )
                .order_by(Complaint.id)
                .limit(500)
            ).all()
            for c in rows:
                overdue = as_utc(c.deadline_at) <= now
                if c.reminded_at is None and not overdue:
                    kind = "complaint.reminder"
                    c.reminded_at = now
                elif overdue and c.overdue_at is None:
                    kind = "complaint.overdue"
                    c.overdue_at = now
                    c.reminded_at = c.reminded_at or now
                else:
                    continue
                s.flush()
                body = complaint_dict(s, c, now)
                emit(
                    s,
                    c.organisation_id,
                    kind,
                    {"complaint": body, "seconds_left": (as_utc(c.deadline_at) - now).total_seconds()},
                )
                audit.append(
                    s,
                    "compliance",
                    kind.replace(".", "_"),
                    f"complaint:{c.id}",
                    {"deadline_at": body["deadline_at"]},
                    organisation_id=c.organisation_id,
                )
                sent += 1
        return sent


__all__ = ["REGIMES", "ComplaintService", "complaint_dict"]
