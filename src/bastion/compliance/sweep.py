"""The compliance sweep the workers run every ``BASTION_COMPLIANCE_SWEEP_SECONDS``.

Restrictions are written in many places (the decision pipeline, reviewers, appeals, authorities' orders); rather
than each of them remembering the law, the sweep finds every ``remove``/``restrict`` decision that has no uploader
notice yet and, in one transaction per decision, writes its statement of reasons, preserves the content and writes
(and, unless delayed, sends) the notice. It then sends complaint reminders, sends notices whose delay ended and
purges expired preservation. Running it twice, or on several workers at once, writes nothing twice: each record is
unique per decision, and a worker that loses that race rolls back only that decision.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bastion.compliance import notices, preservation, statements
from bastion.compliance.complaints import ComplaintService
from bastion.compliance.notices import NoticeService
from bastion.compliance.preservation import KeyProvider, PreservationService
from bastion.settings import Settings
from bastion.storage.db import Database
from bastion.storage.models import ContentItem, Decision, UploaderNotice, utcnow

log = logging.getLogger(__name__)
RESTRICTIONS = ("remove", "restrict")


def pending_restrictions(
    db: Database, *, organisation_id: int | None = None, limit: int = 200, since: datetime | None = None
) -> list[int]:
    """Ids of restriction decisions not yet handled (no notice record), oldest first; only those decided after
    ``since`` when given (the sweep looks back ``BASTION_PRESERVATION_DAYS``: an upgrade does not notify the
    uploaders of removals older than anything it would still preserve)."""
    handled = select(UploaderNotice.id).where(UploaderNotice.decision_id == Decision.id).exists()
    q = select(Decision.id).where(Decision.outcome.in_(RESTRICTIONS), ~handled).order_by(Decision.id).limit(limit)
    if since is not None:
        q = q.where(Decision.created_at >= since)
    if organisation_id is not None:
        q = q.where(Decision.organisation_id == organisation_id)
    with db.session() as s:
        return list(s.scalars(q))


def handle_restriction(
    db: Database, settings: Settings, keys: KeyProvider, decision_id: int, *, now: datetime | None = None
) -> bool:
    """Statement, preservation and notice for one restriction decision, in one transaction. False when another
    worker handled it first."""
    try:
        with db.session() as s:
            decision = s.get(Decision, decision_id)
            item = s.get(ContentItem, decision.content_id) if decision is not None else None
            if decision is None or item is None:
                return False
            statements.record(s, item, decision)
            preservation.preserve(s, keys, item, decision, days=settings.preservation_days, now=now)
            notices.record(s, item, decision, now=now)
        return True
    except IntegrityError:
        return False


def handle_restrictions(
    db: Database,
    settings: Settings,
    *,
    keys: KeyProvider | None = None,
    organisation_id: int | None = None,
    now: datetime | None = None,
    limit: int = 200,
    budget_seconds: float = 10.0,
) -> int:
    """Handle pending restrictions (oldest first) in batches of ``limit`` until none is left or ``budget_seconds``
    have passed (a backlog is worked off over several sweeps). Returns how many were handled."""
    keys = keys or preservation.key_provider(settings)
    since = (now or utcnow()) - timedelta(days=settings.preservation_days)
    done = 0
    started = time.monotonic()
    while True:
        batch = pending_restrictions(db, organisation_id=organisation_id, limit=limit, since=since)
        handled = sum(handle_restriction(db, settings, keys, decision_id, now=now) for decision_id in batch)
        done += handled
        if len(batch) < limit or not handled or time.monotonic() - started > budget_seconds:
            return done


def sweep(
    db: Database, settings: Settings, *, keys: KeyProvider | None = None, now: datetime | None = None
) -> dict[str, Any]:
    """One pass: new restrictions, complaint reminders, ended notice delays, expired preservation."""
    now = now or utcnow()
    keys = keys or preservation.key_provider(settings)
    return {
        "restrictions": handle_restrictions(db, settings, keys=keys, now=now),
        "complaint_events": ComplaintService(db, settings).remind_due(now=now),
        "notices_sent": NoticeService(db, settings).send_due(now=now),
        "purged": PreservationService(db, settings, keys).purge_due(now=now),
    }


__all__ = ["handle_restriction", "handle_restrictions", "pending_restrictions", "sweep"]
