"""Threat-to-life escalations (TCO Art. 14(5), DSA Art. 18): content showing an imminent threat to life or safety is
reported, with an evidence package, to the law-enforcement contact of its jurisdiction (Europol when unclear).

:func:`open_escalation` runs inside the transaction of the decision that found the threat (a policy outcome
``escalate``, or a reviewer's ``escalate_law_enforcement``), so a decision and its report exist together or not at
all. It picks the contact (:func:`~bastion.compliance.authorities.law_enforcement_contact`), freezes the evidence
package (hashes, metadata, uploader, timestamps, matches, reviewer notes) and opens one delivery per channel:

- ``webhook``: an ``escalation.created`` event in the contact organisation's outbox, delivered signed and retried
  by the webhook sender; its receipt is the webhook delivery's state;
- ``email``: to the contact's address over SMTP (:mod:`.smtp`), sent and retried by
  :meth:`EscalationService.deliver_due` (the workers); its receipt is the SMTP server's reply.

Content is reported once: a later escalating decision on the same content adds nothing new. Leads see every
escalation and each channel's state in the console; a contact missing (``no_contact``) or a channel given up
(``failed``) is shown there, as it needs a person to call the police.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bastion import audit
from bastion.compliance.authorities import law_enforcement_contact
from bastion.errors import BastionError, NotFound
from bastion.settings import Settings
from bastion.storage.db import Database
from bastion.storage.models import (
    Authority,
    ContentItem,
    Decision,
    Escalation,
    EscalationDelivery,
    Event,
    Organisation,
    ReviewDecision,
    Webhook,
    WebhookDelivery,
    as_utc,
    utcnow,
)

log = logging.getLogger(__name__)

UNCLEAR = "EU"  # the jurisdiction of the fallback contact (Europol)


def _iso(dt: datetime | None) -> str | None:
    return as_utc(dt).isoformat().replace("+00:00", "Z") if dt is not None else None


def evidence_package(s: Session, item: ContentItem) -> dict[str, Any]:
    """What law enforcement needs to act: never the content itself, only what identifies and explains it."""
    from bastion.decisions.pipeline import content_summary, prior_violations

    decisions = list(s.scalars(select(Decision).where(Decision.content_id == item.id).order_by(Decision.version)))
    matches = []
    for d in decisions:
        for m in (d.evidence or {}).get("matches", []) or []:
            matches.append({k: m.get(k) for k in ("bank", "entry_id", "signal_type", "distance", "labels")})
    notes = [
        {"verdict": r.verdict, "category": r.category, "note": r.note, "at": _iso(r.created_at)}
        for r in s.scalars(
            select(ReviewDecision).where(ReviewDecision.content_id == item.id).order_by(ReviewDecision.id)
        )
    ]
    org = s.get(Organisation, item.organisation_id)
    return {
        "platform": org.name if org else None,
        "content": content_summary(item),
        "hashes": [
            {"type": sig.get("type"), "value": sig.get("value")}
            for sig in (item.signals or [])
            if sig.get("type") != "text_embedding"
        ],
        "uploader": {
            "id": item.uploader_id,
            "prior_violations": prior_violations(s, item.organisation_id, item.uploader_id),
        },
        "timestamps": {"submitted_at": _iso(item.created_at), "decided_at": _iso(item.decided_at)},
        "matches": matches[:50],
        "decisions": [
            {"version": d.version, "outcome": d.outcome, "actor": d.actor, "reason": d.reason, "at": _iso(d.created_at)}
            for d in decisions
        ],
        "reviewer_notes": notes,
    }


def open_escalation(s: Session, item: ContentItem, decision: Decision, actor: str) -> Escalation | None:
    """Report ``item`` (decided ``decision``) in ``s``'s transaction; None when it was reported already."""
    if s.scalar(select(Escalation.id).where(Escalation.content_id == item.id).limit(1)) is not None:
        return None
    jurisdictions = list(item.jurisdictions or [])
    contact = law_enforcement_contact(s, jurisdictions)
    now = utcnow()
    esc = Escalation(
        organisation_id=item.organisation_id,
        content_id=item.id,
        decision_id=decision.id,
        authority_id=contact.id if contact else None,
        jurisdiction=contact.member_state if contact else (jurisdictions[0] if jurisdictions else UNCLEAR),
        status="pending" if contact else "no_contact",
        evidence={},
        actor=actor,
        created_at=now,
    )
    s.add(esc)
    s.flush()
    package = {"escalation_id": esc.id, "created_at": _iso(now), **evidence_package(s, item)}
    esc.evidence = package
    channels: list[str] = []
    if contact is not None:
        from bastion.webhooks import emit

        hooks = s.scalar(
            select(Webhook.id).where(Webhook.organisation_id == contact.organisation_id, Webhook.enabled).limit(1)
        )
        if hooks is not None:
            event_id = emit(s, contact.organisation_id, "escalation.created", {"escalation": package})
            s.add(
                EscalationDelivery(
                    escalation_id=esc.id,
                    channel="webhook",
                    target=event_id,
                    status="pending",
                    attempts=0,
                    next_attempt_at=now,
                    last_error="",
                    receipt="",
                )
            )
            channels.append("webhook")
        if contact.contact_email:
            s.add(
                EscalationDelivery(
                    escalation_id=esc.id,
                    channel="email",
                    target=contact.contact_email,
                    status="pending",
                    attempts=0,
                    next_attempt_at=now,
                    last_error="",
                    receipt="",
                )
            )
            channels.append("email")
        if not channels:
            esc.status = "no_contact"
    s.flush()
    audit.append(
        s,
        actor,
        "escalation_created",
        f"escalation:{esc.id}",
        {
            "content": item.id,
            "decision": decision.id,
            "authority_id": esc.authority_id,
            "jurisdiction": esc.jurisdiction,
            "channels": channels,
            "status": esc.status,
        },
        organisation_id=item.organisation_id,
    )
    return esc


def _status(channels: list[str]) -> str:
    if not channels:
        return "no_contact"
    if "pending" in channels:
        return "pending"
    if all(c == "delivered" for c in channels):
        return "delivered"
    if all(c == "failed" for c in channels):
        return "failed"
    return "partly_delivered"


class EscalationService:
    def __init__(self, db: Database, settings: Settings, *, clock: Callable[[], datetime] | None = None) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock or utcnow

    def deliver_due(self, now: datetime | None = None, *, limit: int = 20) -> int:
        """Send due escalation e-mails (one attempt each), then refresh every open escalation's state from its
        channels (a webhook channel follows its webhook delivery). Returns the e-mails attempted."""
        from bastion.compliance import smtp
        from bastion.webhooks.delivery import backoff_seconds

        now = now or self.clock()
        with self.db.session() as s:
            due = s.execute(
                select(EscalationDelivery.id, EscalationDelivery.escalation_id, EscalationDelivery.target)
                .where(
                    EscalationDelivery.channel == "email",
                    EscalationDelivery.status == "pending",
                    EscalationDelivery.next_attempt_at <= now,
                )
                .order_by(EscalationDelivery.next_attempt_at)
                .limit(limit)
            ).all()
            evidence = {
                eid: dict(e.evidence or {})
                for eid, e in ((eid, s.get(Escalation, eid)) for _, eid, _ in due)
                if e is not None
            }
        for delivery_id, escalation_id, to in due:
            package = evidence.get(escalation_id, {})
            body = _email_body(package)
            msg = smtp.build_message(
                self.settings,
                to,
                f"[Bastion] Threat to life: escalation {escalation_id} from {package.get('platform')}",
                body,
                package,
                filename=f"escalation-{escalation_id}.json",
            )
            receipt, error = "", ""
            try:
                receipt = smtp.send(self.settings, msg)
            except BastionError as exc:
                error = exc.message
            with self.db.session() as s:
                d = s.get(EscalationDelivery, delivery_id)
                esc = s.get(Escalation, escalation_id)
                if d is None or esc is None or d.status != "pending":
                    continue
                d.attempts += 1
                if receipt:
                    d.status, d.receipt, d.delivered_at, d.last_error = "delivered", receipt, now, ""
                else:
                    d.last_error = error[:1000]
                    if d.attempts >= self.settings.escalation_max_attempts:
                        d.status = "failed"
                    else:
                        d.next_attempt_at = now + timedelta(seconds=backoff_seconds(self.settings, d.attempts))
                audit.append(
                    s,
                    "system",
                    "escalation_email",
                    f"escalation:{escalation_id}",
                    {
                        "to": to,
                        "attempt": d.attempts,
                        "status": d.status,
                        "receipt": d.receipt[:200],
                        "error": d.last_error[:200],
                    },
                    organisation_id=esc.organisation_id,
                )
        self.refresh()
        return len(due)

    def refresh(self) -> int:
        """Bring each pending escalation's webhook channels and status up to date; how many changed."""
        changed = 0
        with self.db.session() as s:
            for esc in s.scalars(select(Escalation).where(Escalation.status == "pending").limit(500)):
                states = []
                for d in s.scalars(select(EscalationDelivery).where(EscalationDelivery.escalation_id == esc.id)):
                    if d.channel == "webhook" and d.status == "pending":
                        rows = s.execute(
                            select(
                                WebhookDelivery.status,
                                WebhookDelivery.last_status,
                                WebhookDelivery.delivered_at,
                                WebhookDelivery.attempts,
                                WebhookDelivery.last_error,
                            )
                            .join(Event, Event.id == WebhookDelivery.event_id)
                            .where(Event.event_id == d.target)
                        ).all()
                        d.attempts = max((r.attempts for r in rows), default=0)
                        if any(r.status == "delivered" for r in rows):
                            ok = next(r for r in rows if r.status == "delivered")
                            d.status, d.delivered_at, d.receipt = "delivered", ok.delivered_at, f"HTTP {ok.last_status}"
                        elif rows and all(r.status == "failed" for r in rows):
                            d.status, d.last_error = "failed", (rows[0].last_error or "")[:1000]
                        elif not rows:
                            d.status, d.last_error = "failed", "the event's webhook deliveries are gone"
                    states.append(d.status)
                status = _status(states)
                if status != esc.status:
                    esc.status = status
                    changed += 1
                    audit.append(
                        s,
                        "system",
                        "escalation_status",
                        f"escalation:{esc.id}",
                        {"status": status},
                        organisation_id=esc.organisation_id,
                    )
        return changed

    def list(self, organisation_id: int, *, limit: int = 200) -> list[dict[str, Any]]:
        with self.db.session() as s:
            rows = s.scalars(
                select(Escalation)
                .where(Escalation.organisation_id == organisation_id)
                .order_by(Escalation.id.desc())
                .limit(max(1, min(limit, 1000)))
            ).all()
            return [_dict(s, e, evidence=False) for e in rows]

    def get(self, organisation_id: int, escalation_id: int) -> dict[str, Any]:
        with self.db.session() as s:
            e = s.get(Escalation, escalation_id) if 0 < escalation_id < 2**63 else None
            if e is None or e.organisation_id != organisation_id:
                raise NotFound(f"no escalation {escalation_id}", code="escalation_not_found")
            return _dict(s, e, evidence=True)


def _dict(s: Session, e: Escalation, *, evidence: bool) -> dict[str, Any]:
    contact = s.get(Authority, e.authority_id) if e.authority_id else None
    contact_org = s.get(Organisation, contact.organisation_id) if contact else None
    item = s.get(ContentItem, e.content_id)
    out: dict[str, Any] = {
        "id": e.id,
        "content_id": e.content_id,
        "external_id": item.external_id if item else None,
        "decision_id": e.decision_id,
        "status": e.status,
        "jurisdiction": e.jurisdiction,
        "contact": {
            "name": contact_org.name if contact_org else None,
            "member_state": contact.member_state,
            "email": contact.contact_email,
        }
        if contact
        else None,
        "actor": e.actor,
        "created_at": _iso(e.created_at),
        "channels": [
            {
                "channel": d.channel,
                "target": d.target,
                "status": d.status,
                "attempts": d.attempts,
                "receipt": d.receipt,
                "last_error": d.last_error,
                "delivered_at": _iso(d.delivered_at),
                "next_attempt_at": _iso(d.next_attempt_at) if d.status == "pending" else None,
            }
            for d in s.scalars(
                select(EscalationDelivery)
                .where(EscalationDelivery.escalation_id == e.id)
                .order_by(EscalationDelivery.id)
            )
        ],
    }
    if evidence:
        out["evidence"] = dict(e.evidence or {})
    return out


def _email_body(package: dict[str, Any]) -> str:
    content = package.get("content") or {}
    lines = [
        "An imminent threat to life or safety was found on a platform using Bastion (TCO Art. 14(5), DSA Art. 18).",
        "",
        f"Platform: {package.get('platform')}",
        f"Escalation: {package.get('escalation_id')} at {package.get('created_at')}",
        f"Platform content id: {content.get('external_id')}   URL: {content.get('url') or '-'}",
        f"Uploader: {(package.get('uploader') or {}).get('id') or '-'}",
        f"Jurisdictions: {', '.join(content.get('jurisdictions') or []) or 'unknown'}",
        f"SHA-256: {content.get('sha256') or '-'}",
        "",
        "The evidence package (hashes, metadata, matches, decisions and reviewer notes) is attached as JSON.",
        "The content itself is not attached; the platform preserves it for the competent authorities.",
    ]
    return "\n".join(lines)


__all__ = ["EscalationService", "evidence_package", "open_escalation"]
