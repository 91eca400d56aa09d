"""Orders and referrals from authorities, and threat-to-life escalations (docs/authorities.md).

An authority's key (scope ``authority``) sends and follows its orders; a platform's key (scope ``review``) follows
the orders sent to it and answers them. Either side asking for an order that is not theirs gets 404.

- ``POST /v1/orders`` (authority) -> 201 {"order": ...}: received, and executed at once when binding and the
  platform executes automatically
- ``GET /v1/orders``, ``GET /v1/orders/{order_id}`` (authority or review): the caller's orders, with the clock
- ``POST /v1/orders/{order_id}/clarification`` (authority) {"clarification"}: restarts the clock
- ``POST /v1/orders/{order_id}/cannot-comply`` (review) {"reason", "explanation"}: stops the clock
- ``POST /v1/orders/{order_id}/execute`` (review): a platform in review mode executes a waiting order
- ``GET /v1/escalations``, ``GET /v1/escalations/{escalation_id}`` (review): threat-to-life reports and receipts
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Query
from pydantic import BaseModel, Field

from bastion.accounts.service import Principal
from bastion.api.deps import DB, AppSettings, require_scope
from bastion.compliance.escalation import EscalationService
from bastion.compliance.orders import OrderService

AuthorityKey = Annotated[Principal, Depends(require_scope("authority"))]
PlatformKey = Annotated[Principal, Depends(require_scope("review"))]
EitherKey = Annotated[Principal, Depends(require_scope("authority", "review"))]


class CannotComplyRequest(BaseModel):
    reason: str = Field(
        max_length=64,
        description="force_majeure, de_facto_impossibility, manifest_error or "
        "insufficient_information (TCO Art. 3(7), 3(8)).",
    )
    explanation: str = Field(default="", max_length=10000, description="What the authority should know or fix.")


class ClarificationRequest(BaseModel):
    clarification: str = Field(default="", max_length=10000, description="The authority's answer.")


def _actor(principal: Principal) -> str:
    return f"api-key:{principal.key_id}"


def add_order_routes(r: FastAPI) -> None:
    """Added to the app itself (not a router) so the route-matrix test sees every endpoint."""

    @r.post("/v1/orders", status_code=201)
    def create_order(
        db: DB,
        settings: AppSettings,
        principal: AuthorityKey,
        body: Annotated[dict[str, Any], Body(description="The order (docs/authorities.md).")],
    ) -> dict[str, Any]:
        """Send a removal order or a referral to a platform that accepts the calling authority."""
        order = OrderService(db, settings).receive(principal.organisation_id, body, actor=_actor(principal))
        return {"order": order}

    @r.get("/v1/orders")
    def list_orders(
        db: DB,
        settings: AppSettings,
        principal: EitherKey,
        status: Annotated[str | None, Query(max_length=16)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    ) -> dict[str, Any]:
        """An authority's orders, or a platform's (open clocks first)."""
        return {"orders": OrderService(db, settings).list(principal.organisation_id, status=status, limit=limit)}

    @r.get("/v1/orders/{order_id}")
    def get_order(order_id: int, db: DB, settings: AppSettings, principal: EitherKey) -> dict[str, Any]:
        """One order with its content, clock, answers and confirmation."""
        return {"order": OrderService(db, settings).get(principal.organisation_id, order_id)}

    @r.post("/v1/orders/{order_id}/clarification")
    def clarify_order(
        order_id: int, body: ClarificationRequest, db: DB, settings: AppSettings, principal: AuthorityKey
    ) -> dict[str, Any]:
        """The authority clarifies an order the platform could not comply with; the hour starts again."""
        svc = OrderService(db, settings)
        return {"order": svc.clarify(principal.organisation_id, order_id, body.clarification, actor=_actor(principal))}

    @r.post("/v1/orders/{order_id}/cannot-comply")
    def cannot_comply(
        order_id: int, body: CannotComplyRequest, db: DB, settings: AppSettings, principal: PlatformKey
    ) -> dict[str, Any]:
        """The platform cannot comply, with a TCO reason: the clock stops until the authority clarifies."""
        svc = OrderService(db, settings)
        return {
            "order": svc.cannot_comply(
                principal.organisation_id, order_id, body.reason, body.explanation, actor=_actor(principal)
            )
        }

    @r.post("/v1/orders/{order_id}/execute")
    def execute_order(order_id: int, db: DB, settings: AppSettings, principal: PlatformKey) -> dict[str, Any]:
        """Remove every piece of content of an order waiting for review, bank its hashes and confirm."""
        return {
            "order": OrderService(db, settings).execute(principal.organisation_id, order_id, actor=_actor(principal))
        }

    @r.get("/v1/escalations")
    def list_escalations(
        db: DB, settings: AppSettings, principal: PlatformKey, limit: Annotated[int, Query(ge=1, le=1000)] = 200
    ) -> dict[str, Any]:
        """The organisation's threat-to-life escalations, newest first, with each channel's state."""
        return {"escalations": EscalationService(db, settings).list(principal.organisation_id, limit=limit)}

    @r.get("/v1/escalations/{escalation_id}")
    def get_escalation(escalation_id: int, db: DB, settings: AppSettings, principal: PlatformKey) -> dict[str, Any]:
        """One escalation with its evidence package and receipts."""
        return {"escalation": EscalationService(db, settings).get(principal.organisation_id, escalation_id)}
