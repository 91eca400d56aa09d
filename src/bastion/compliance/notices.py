"""The notice to the uploader of removed content (TCO Art. 11).

Bastion does not know the platform's users, so the platform delivers the notice: every restriction gets an
:class:`~bastion.storage.models.UploaderNotice` and, unless an authority asked for a delay, an ``uploader.notice``
webhook event (in the same transaction) carrying what the notice must say: what was removed, why (the statement of
reasons), and how to complain (``POST /v1/content/{id}/complaints``).

A competent authority may ask the platform not to tell the uploader, for reasons of public security, for up to six
weeks, renewable once for six weeks more (TCO Art. 11(3)). :meth:`NoticeService.delay` records the request (before or
after the restriction: a notice not yet written is written delayed); the workers' sweep sends the notice when the
delay ends (:meth:`NoticeService.send_due`).
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
    ContentItem,
    Decision,
    StatementOfReasons,
    UploaderNotice,
    as_utc,
    utcnow,
)

DELAY = timedelta(weeks=6)
MAX_RENEWALS = 1


def _iso(dt: datetime | None) -> str | None:
    return as_utc(dt).isoformat().replace("+00:00", "Z") if dt is not None else None


def notice_dict(n: UploaderNotice) -> dict[str, Any]:
    return {
        "id": n.id,
        "content_id": n.content_id,
        "decision_id": n.decision_id,
        "uploader_id": n.uploader_id,
        "status": n.status,
        "delay_until": _iso(n.delay_until),
        "delay_renewals": n.delay_renewals,
        "delay_requested_by": n.delay_requested_by or None,
        "delay_reference": n.delay_reference or None,
        "created_at": _iso(n.created_at),
        "sent_at": _iso(n.sent_at),
    }


def _send(s: Session, n: UploaderNotice, now: datetime) -> None:
    from bastion.decisions.pipeline import content_summary, decision_dict
    from bastion.webhooks import emit

    item = s.get(ContentItem, n.content_id)
    decision = s.get(Decision, n.decision_id)
    statement = s.scalar(select(StatementOfReasons.statement).where(StatementOfReasons.decision_id == n.decision_id))
    n.status, n.sent_at = "sent", now
    s.flush()
    emit(
        s,
        n.organisation_id,
        "uploader.notice",
        {
            "notice": notice_dict(n),
            "content": content_summary(item) if item is not None else {"id": n.content_id},
            "decision": decision_dict(decision) if decision is not None else None,
            "statement_of_reasons": statement,
            "complaint": {"path": f"/v1/content/{n.content_id}/complaints", "regimes": ["tco", "dsa"]},
        },
    )
    audit.append(
        s,
        "compliance",
        "uploader_notice_sent",
        f"notice:{n.id}",
        {"content": n.content_id, "decision": n.decision_id},
        organisation_id=n.organisation_id,
    )


def record(session: Session, item: ContentItem, decision: Decision, *, now: datetime | None = None) -> UploaderNotice:
    """The notice for a restriction, in ``session``: sent now, or delayed when an authority's delay on this content
    is running (once per decision)."""
    now = now or utcnow()
    existing = session.scalars(select(UploaderNotice).where(UploaderNotice.decision_id == decision.id)).first()
    if existing is not None:
        return existing
    running = session.scalars(
        select(UploaderNotice).where(
            UploaderNotice.content_id == item.id, UploaderNotice.status == "delayed", UploaderNotice.delay_until > now
        )
    ).first()
    n = UploaderNotice(
        organisation_id=item.organisation_id,
        content_id=item.id,
        decision_id=decision.id,
        uploader_id=item.uploader_id,
        status="delayed" if running else "sent",
        created_at=now,
    )
    if running is not None:
        n.delay_until, n.delay_renewals = running.delay_until, running.delay_renewals
        n.delay_requested_by, n.delay_reference = running.delay_requested_by, running.delay_reference
    session.add(n)
    session.flush()
    if running is None:
        _send(session, n, now)
    return n


class NoticeService:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    def delay(
        self,
        actor: str,
        organisation_id: int,
        content_id: int,
        *,
        requested_by: str,
        reference: str,
        renew: bool = False,
        now: datetime | None = None,
    ) -> dict[str, Any]:
        """An authority's request not to notify the uploader of ``content_id``'s removal: six weeks from now, or
        (``renew``) six weeks more, once. A notice already sent cannot be delayed (409 ``notice_already_sent``)."""
        now = now or utcnow()
        requested_by, reference = (requested_by or "").strip(), (reference or "").strip()
        if not requested_by or len(requested_by) > 200:
            raise InvalidInput("name the authority that asked (1 to 200 characters)", code="requested_by_required")
        if not reference or len(reference) > 200:
            raise InvalidInput("give the request's reference (1 to 200 characters)", code="reference_required")
        with self.db.session() as s:
            item = s.get(ContentItem, content_id)
            if item is None or item.organisation_id != organisation_id:
                raise NotFound(f"no content {content_id}", code="content_not_found")
            decision = s.scalars(
                select(Decision)
                .where(Decision.content_id == item.id, Decision.outcome.in_(("remove", "restrict")))
                .order_by(Decision.version.desc())
                .limit(1)
            ).first()
            if decision is None:
                raise Conflict(
                    "this content was not removed or restricted: there is no notice to delay", code="no_restriction"
                )
            n = s.scalars(select(UploaderNotice).where(UploaderNotice.decision_id == decision.id)).first()
            if n is not None and n.status == "sent":
                raise Conflict(f"the uploader was already notified at {_iso(n.sent_at)}", code="notice_already_sent")
            if renew:
                if n is None or n.delay_until is None:
                    raise Conflict("there is no delay to renew", code="no_delay")
                if n.delay_renewals >= MAX_RENEWALS:
                    raise Conflict(
                        "a delay is renewable once (TCO Art. 11(3)): six weeks, then six more",
                        code="delay_renewal_limit",
                    )
                n.delay_until = as_utc(n.delay_until) + DELAY
                n.delay_renewals += 1
            else:
                if n is not None and n.delay_until is not None:
                    raise Conflict("a delay is already running; renew it instead", code="delay_exists")
                if n is None:
                    n = UploaderNotice(
                        organisation_id=organisation_id,
                        content_id=item.id,
                        decision_id=decision.id,
                        uploader_id=item.uploader_id,
                        created_at=now,
                    )
                    s.add(n)
                n.delay_until = now + DELAY
            n.status = "delayed"
            n.delay_requested_by, n.delay_reference = requested_by, reference
            s.flush()
            audit.append(
                s,
                actor,
                "uploader_notice_delayed",
                f"notice:{n.id}",
                {
                    "content": item.id,
                    "until": _iso(n.delay_until),
                    "renewal": renew,
                    "requested_by": requested_by,
                    "reference": reference,
                },
                organisation_id=organisation_id,
            )
            return notice_dict(n)

    def get(self, organisation_id: int, notice_id: int) -> dict[str, Any]:
        with self.db.session() as s:
            n = s.get(UploaderNotice, notice_id)
            if n is None or n.organisation_id != organisation_id:
                raise NotFound(f"no notice {notice_id}", code="notice_not_found")
            return notice_dict(n)

    def list(self, organisation_id: int, *, content_id: int | None = None, limit: int = 200) -> list[dict[str, Any]]:
        with self.db.session() as s:
            q = select(UploaderNotice).where(UploaderNotice.organisation_id == organisation_id)
            if content_id is not None:
                q = q.where(UploaderNotice.content_id == content_id)
            return [
                notice_dict(n) for n in s.scalars(q.order_by(UploaderNotice.id.desc()).limit(max(1, min(limit, 1000))))
            ]

    def send_due(self, *, now: datetime | None = None) -> int:
        """Send the notices whose delay has ended."""
        now = now or utcnow()
        with self.db.session() as s:
            rows = s.scalars(
                select(UploaderNotice)
                .where(UploaderNotice.status == "delayed", UploaderNotice.delay_until <= now)
                .order_by(UploaderNotice.id)
                .limit(500)
            ).all()
            for n in rows:
                _send(s, n, now)
            return len(rows)


__all__ = ["DELAY", "NoticeService", "notice_dict", "record"]
