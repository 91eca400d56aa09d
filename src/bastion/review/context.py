"""What a reviewer needs to see beside one item: why it is here, who uploaded it and what else is like it.

A read model for the console's item view, kept out of the web layer: the decision that sent the item to review
(matched bank entries with labels and distance, classifier scores, rule, policy version), the parts of its
priority (:func:`bastion.review.routing.explain_priority`), the uploader's earlier submissions in this
organisation with their standing decisions, items already decided that are like this one (the same sha256, or
matching the same bank entries) and, for an appeal, the appeal. Everything is scoped to the reviewer's
organisation; the bytes are never read here (the media route serves them through signed URLs).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bastion.review.routing import confidence_of, explain_priority, trusted_of
from bastion.review.service import Reviewer
from bastion.storage.db import Database
from bastion.storage.models import (
    Appeal,
    ContentBlob,
    ContentItem,
    Decision,
    ReviewDecision,
    ReviewItem,
    as_utc,
)

HISTORY_LIMIT = 20
SIMILAR_LIMIT = 20
SCAN_DECISIONS = 2000  # recent decisions scanned for matches on the same bank entries
TEXT_PREVIEW_CHARS = 20_000


def _latest(s: Session, content_ids: list[int]) -> dict[int, Decision]:
    if not content_ids:
        return {}
    newest = (
        select(Decision.content_id, func.max(Decision.version).label("v"))
        .where(Decision.content_id.in_(content_ids))
        .group_by(Decision.content_id)
        .subquery()
    )
    rows = s.scalars(
        select(Decision).join(newest, (Decision.content_id == newest.c.content_id) & (Decision.version == newest.c.v))
    )
    return {d.content_id: d for d in rows}


def _summary(item: ContentItem, decision: Decision | None) -> dict[str, Any]:
    return {
        "id": item.id,
        "external_id": item.external_id,
        "content_type": item.content_type,
        "submitted_at": as_utc(item.created_at),
        "outcome": decision.outcome if decision else None,
        "automated": decision.automated if decision else None,
        "reason": decision.reason if decision else "",
    }


def item_context(db: Database, reviewer: Reviewer, item_id: int) -> dict[str, Any]:
    """The item view's facts (the caller has already checked the reviewer may see ``item_id``)."""
    with db.session() as s:
        row = s.get(ReviewItem, item_id)
        assert row is not None and row.organisation_id == reviewer.organisation_id
        item = s.get(ContentItem, row.content_id)
        assert item is not None
        sent_by = s.get(Decision, row.decision_id) if row.decision_id else None
        evidence = dict(sent_by.evidence or {}) if sent_by else {}
        matches = list(evidence.get("matches") or [])
        parts = explain_priority(
            severity=row.severity,
            policy_priority=sent_by.priority if sent_by else None,
            confidence=confidence_of(evidence),
            trusted=trusted_of(evidence),
            reach=item.reach,
            deadline_at=as_utc(row.deadline_at) if row.deadline_at else None,
            now=as_utc(row.created_at),
        )
        blob = s.get(ContentBlob, item.id)
        text = None
        if blob is not None and item.content_type == "text":
            text = bytes(blob.data)[: TEXT_PREVIEW_CHARS * 4].decode("utf-8", "replace")[:TEXT_PREVIEW_CHARS]
        pdf_text = _pdf_text(bytes(blob.data)) if blob is not None and item.content_type == "pdf" else None

        history: list[dict[str, Any]] = []
        if item.uploader_id:
            earlier = s.scalars(
                select(ContentItem)
                .where(
                    ContentItem.organisation_id == item.organisation_id,
                    ContentItem.uploader_id == item.uploader_id,
                    ContentItem.id != item.id,
                )
                .order_by(ContentItem.id.desc())
                .limit(HISTORY_LIMIT)
            ).all()
            latest = _latest(s, [c.id for c in earlier])
            history = [_summary(c, latest.get(c.id)) for c in earlier]

        similar = _similar(s, item, matches)
        appeal = None
        if row.appeal_id:
            a = s.get(Appeal, row.appeal_id)
            if a is not None:
                appealed = s.get(Decision, a.decision_id)
                appeal = {
                    "id": a.id,
                    "reason": a.reason,
                    "appellant_id": a.appellant_id,
                    "status": a.status,
                    "created_at": as_utc(a.created_at),
                    "decision": {
                        "version": appealed.version,
                        "outcome": appealed.outcome,
                        "reason": appealed.reason,
                        "actor": appealed.actor,
                        "automated": appealed.automated,
                    }
                    if appealed
                    else None,
                }
        qa_of = None
        if row.kind == "qa":
            qa_of = {"blind": True}  # a QA second look is decided without seeing the first verdict
        return {
            "item": row,
            "content": item,
            "has_blob": blob is not None,
            "size": len(blob.data) if blob is not None else item.size_bytes,
            "sent_by": sent_by,
            "matches": matches,
            "classifier_scores": list(evidence.get("classifier_scores") or []),
            "entities": evidence.get("entities"),
            "priority_parts": parts,
            "text": text,
            "pdf_text": pdf_text,
            "history": history,
            "similar": similar,
            "appeal": appeal,
            "qa": qa_of,
        }


def _similar(s: Session, item: ContentItem, matches: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Other items of the organisation with the same sha256, banked into or matching the same entries."""
    found: dict[int, str] = {}
    if item.sha256:
        for cid in s.scalars(
            select(ContentItem.id)
            .where(
                ContentItem.organisation_id == item.organisation_id,
                ContentItem.sha256 == item.sha256,
                ContentItem.id != item.id,
            )
            .order_by(ContentItem.id.desc())
            .limit(SIMILAR_LIMIT)
        ):
            found.setdefault(cid, "same file (sha256)")
    entry_ids = {int(m["entry_id"]) for m in matches if m.get("entry_id") is not None}
    if entry_ids:
        for cid in s.scalars(
            select(ReviewDecision.content_id).where(
                ReviewDecision.organisation_id == item.organisation_id, ReviewDecision.bank_entry_id.in_(entry_ids)
            )
        ):
            if cid != item.id:
                found.setdefault(cid, "its hashes are the matched bank entry")
        recent = s.execute(
            select(Decision.content_id, Decision.evidence)
            .where(Decision.organisation_id == item.organisation_id, Decision.content_id != item.id)
            .order_by(Decision.id.desc())
            .limit(SCAN_DECISIONS)
        ).all()
        for cid, ev in recent:
            hit = {int(m["entry_id"]) for m in (ev or {}).get("matches", []) if m.get("entry_id") is not None}
            if hit & entry_ids:
                found.setdefault(cid, "matched the same bank entry")
            if len(found) >= SIMILAR_LIMIT:
                break
    ids = list(found)[:SIMILAR_LIMIT]
    items = {c.id: c for c in s.scalars(select(ContentItem).where(ContentItem.id.in_(ids)))} if ids else {}
    latest = _latest(s, ids)
    return [{**_summary(items[i], latest.get(i)), "why": found[i]} for i in ids if i in items]


def _pdf_text(data: bytes, max_pages: int = 20) -> dict[str, Any]:
    """The text of a PDF's first pages (pypdf): shown under the page images, and what screen readers get."""
    import io

    try:
        from pypdf import PdfReader

        reader = PdfReader(io.BytesIO(data))
        pages = []
        for page in reader.pages[:max_pages]:
            pages.append((page.extract_text() or "").strip()[:TEXT_PREVIEW_CHARS])
        return {"pages": pages, "page_count": len(reader.pages), "error": None}
    except Exception as exc:  # noqa: BLE001 - a broken PDF must not break the item view
        return {"pages": [], "page_count": 0, "error": f"{type(exc).__name__}: the PDF's text could not be read"}


__all__ = ["item_context"]
