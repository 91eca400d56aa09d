"""Review routes of the JSON API: users' appeals sent by the platform, queues, the dashboard numbers and the QA
share. Everything is within the calling key's organisation (another organisation's content, appeal or queue is not
found).

- ``POST /v1/content/{content_id}/appeals`` {reason, appellant_id} -> 201 (``submit``): a user's appeal against the
  standing decision (409 ``not_appealable`` unless it is a removal, restriction or escalation; 409
  ``appeal_exists`` while one is open; 404 ``content_not_found``)
- ``GET /v1/appeals/{appeal_id}`` (``submit`` or ``review``): its status (open, upheld, overturned)
- ``GET /v1/review/queues`` (``review``); ``POST /v1/review/queues`` {name, criteria, roles, sla_minutes,
  description} -> 201 and ``DELETE /v1/review/queues/{name}`` (``policy`` or ``admin``)
- ``GET /v1/review/stats?window=24h|7d`` (``review``): queue depth, decisions per hour, time to decision, overturn
  rate, QA disagreement and agreement, SLA breaches (bastion.review.stats)
- ``PUT /v1/review/qa`` {share} (``admin``): the share of decisions sent to a second reviewer (0 to 1)
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query
from pydantic import BaseModel, Field

from bastion.accounts.service import Principal
from bastion.api.deps import DB, AppSettings, require_scope
from bastion.review import ReviewService
from bastion.review.stats import DEFAULT_WINDOW, WINDOWS, dashboard, parse_window
from bastion.storage.db import Database
from bastion.storage.models import utcnow

Submitter = Annotated[Principal, Depends(require_scope("submit"))]
AppealReader = Annotated[Principal, Depends(require_scope("submit", "review"))]
ReviewReader = Annotated[Principal, Depends(require_scope("review"))]
QueueEditor = Annotated[Principal, Depends(require_scope("policy", "admin"))]
Admin = Annotated[Principal, Depends(require_scope("admin"))]


class AppealRequest(BaseModel):
    reason: str = Field(default="", description="The user's words (at most 5000 characters).")
    appellant_id: str | None = Field(default=None, max_length=200, description="The platform's id of the user.")


class QueueRequest(BaseModel):
    name: str = Field(min_length=1, max_length=64, description="Lower-case letters, digits, '_', '-', '.'.")
    criteria: dict[str, Any] = Field(
        default_factory=dict, description="outcomes, jurisdictions, languages, categories: lists of accepted values."
    )
    roles: list[str] = Field(default_factory=list, description="Roles that may work it (empty: every role).")
    sla_minutes: int | None = Field(default=None, description="Minutes an item may wait (1 to 525600).")
    description: str = Field(default="", max_length=2000)


class QaShareRequest(BaseModel):
    share: float = Field(description="0 to 1: the share of first decisions a second reviewer checks blind.")


def _service(db: Database, settings: Any) -> ReviewService:
    return ReviewService(db, settings)


def _actor(principal: Principal) -> str:
    return f"api-key:{principal.key_id}"


def add_review_routes(r: FastAPI) -> None:
    """Added to the app itself (not a router) so the route-matrix test sees every endpoint."""

    @r.post("/v1/content/{content_id}/appeals", status_code=201)
    def create_appeal(
        content_id: int, body: AppealRequest, db: DB, settings: AppSettings, principal: Submitter
    ) -> dict[str, Any]:
        """A user's appeal against the standing decision on their content; it waits in the ``appeals`` queue for a
        reviewer other than the one who decided."""
        appeal = _service(db, settings).create_appeal(
            _actor(principal),
            principal.organisation_id,
            content_id,
            reason=body.reason,
            appellant_id=body.appellant_id,
        )
        return {"appeal": appeal}

    @r.get("/v1/appeals/{appeal_id}")
    def get_appeal(appeal_id: int, db: DB, settings: AppSettings, principal: AppealReader) -> dict[str, Any]:
        """One appeal of the caller's organisation: ``status`` is open, upheld or overturned."""
        return {"appeal": _service(db, settings).get_appeal(principal.organisation_id, appeal_id)}

    @r.get("/v1/review/queues")
    def list_queues(db: DB, settings: AppSettings, principal: ReviewReader) -> dict[str, Any]:
        """The organisation's queues (defined ones in routing order, then the built-in ones)."""
        return {"queues": _service(db, settings).list_queues(principal.organisation_id)}

    @r.post("/v1/review/queues", status_code=201)
    def create_queue(body: QueueRequest, db: DB, settings: AppSettings, principal: QueueEditor) -> dict[str, Any]:
        """A named queue: items whose criteria hold land in it (the first such queue by position)."""
        queue = _service(db, settings).create_queue(
            _actor(principal),
            principal.organisation_id,
            body.name,
            criteria=body.criteria,
            roles=body.roles,
            sla_minutes=body.sla_minutes,
            description=body.description,
        )
        return {"queue": queue}

    @r.delete("/v1/review/queues/{name}")
    def delete_queue(name: str, db: DB, settings: AppSettings, principal: QueueEditor) -> dict[str, Any]:
        """Delete a defined queue (its waiting items stay under the queue name; built-in queues cannot go)."""
        _service(db, settings).delete_queue(_actor(principal), principal.organisation_id, name)
        return {"deleted": name}

    @r.get("/v1/review/stats")
    def review_stats(
        db: DB,
        settings: AppSettings,
        principal: ReviewReader,
        window: Annotated[str, Query(description=f"one of {', '.join(WINDOWS)}")] = DEFAULT_WINDOW,
    ) -> dict[str, Any]:
        """The dashboard numbers over the window (see bastion.review.stats), and QA agreement per reviewer and
        per category."""
        span, now = parse_window(window), utcnow()
        out = dashboard(db, principal.organisation_id, window=span, now=now)
        agreement = _service(db, settings).agreement(principal.organisation_id, since=now - span)
        return {"window": window, **out, "qa_agreement": agreement}

    @r.put("/v1/review/qa")
    def set_qa_share(body: QaShareRequest, db: DB, settings: AppSettings, principal: Admin) -> dict[str, Any]:
        """Set the QA share (0 to 1); the sampling is deterministic per decision."""
        share = _service(db, settings).set_qa_share(_actor(principal), principal.organisation_id, body.share)
        return {"qa_share": share}
