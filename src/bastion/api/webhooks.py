"""Webhook routes (``admin`` scope), all scoped to the caller's organisation (another's webhook: 404).

- ``POST /v1/webhooks`` {url, events} -> 201 with ``secret`` (shown this once)
- ``GET /v1/webhooks``, ``GET /v1/webhooks/{id}``, ``PATCH /v1/webhooks/{id}`` {enabled, events},
  ``DELETE /v1/webhooks/{id}``
- ``POST /v1/webhooks/{id}/rotate-secret`` {keep_previous_seconds} -> the new ``secret`` (shown this once)
- ``POST /v1/webhooks/{id}/test``: queue a ``ping`` event for this webhook
- ``GET /v1/webhooks/{id}/deliveries`` (?status=&limit=&before_id=), ``POST .../deliveries/{delivery_id}/redeliver``
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query
from pydantic import BaseModel, Field

from bastion.accounts.service import Principal
from bastion.api.deps import DB, AppSettings, require_scope
from bastion.webhooks.service import WebhookService

Admin = Annotated[Principal, Depends(require_scope("admin"))]


class CreateWebhookRequest(BaseModel):
    url: str = Field(min_length=1, max_length=2000)
    events: list[str] = Field(default_factory=list, description="Event types to receive; empty: all.")


class UpdateWebhookRequest(BaseModel):
    enabled: bool | None = None
    events: list[str] | None = None


class RotateSecretRequest(BaseModel):
    keep_previous_seconds: int = Field(default=0, ge=0, le=7 * 86400)


def add_webhook_routes(r: FastAPI) -> None:
    """Added to the app itself (not a router) so the route-matrix test sees every endpoint."""

    def service(db: Any, settings: Any, principal: Principal) -> WebhookService:
        return WebhookService(db, f"api-key:{principal.key_id}", settings)

    @r.post("/v1/webhooks", status_code=201)
    def create_webhook(body: CreateWebhookRequest, db: DB, settings: AppSettings, principal: Admin) -> dict[str, Any]:
        """Register a webhook; its signing ``secret`` is in this response only."""
        info, secret = service(db, settings, principal).create(principal.organisation_id, body.url, body.events)
        return {"webhook": info.to_dict(), "secret": secret}

    @r.get("/v1/webhooks")
    def list_webhooks(db: DB, settings: AppSettings, principal: Admin) -> dict[str, Any]:
        """The caller's organisation's webhooks (never their secrets)."""
        return {"webhooks": [w.to_dict() for w in service(db, settings, principal).list(principal.organisation_id)]}

    @r.get("/v1/webhooks/{webhook_id}")
    def get_webhook(webhook_id: int, db: DB, settings: AppSettings, principal: Admin) -> dict[str, Any]:
        """One webhook."""
        return {"webhook": service(db, settings, principal).get(principal.organisation_id, webhook_id).to_dict()}

    @r.patch("/v1/webhooks/{webhook_id}")
    def update_webhook(
        webhook_id: int, body: UpdateWebhookRequest, db: DB, settings: AppSettings, principal: Admin
    ) -> dict[str, Any]:
        """Enable or disable a webhook (pending deliveries of a disabled one wait), or change its event types."""
        info = service(db, settings, principal).update(
            principal.organisation_id, webhook_id, enabled=body.enabled, events=body.events
        )
        return {"webhook": info.to_dict()}

    @r.delete("/v1/webhooks/{webhook_id}")
    def delete_webhook(webhook_id: int, db: DB, settings: AppSettings, principal: Admin) -> dict[str, Any]:
        """Delete a webhook and its deliveries."""
        return {"webhook": service(db, settings, principal).delete(principal.organisation_id, webhook_id).to_dict()}

    @r.post("/v1/webhooks/{webhook_id}/rotate-secret")
    def rotate_webhook_secret(
        webhook_id: int,
        db: DB,
        settings: AppSettings,
        principal: Admin,
        body: RotateSecretRequest | None = None,
    ) -> dict[str, Any]:
        """A new signing secret, in this response only; ``keep_previous_seconds`` also signs with the old one."""
        keep = body.keep_previous_seconds if body is not None else 0
        info, secret = service(db, settings, principal).rotate_secret(principal.organisation_id, webhook_id, keep)
        return {"webhook": info.to_dict(), "secret": secret}

    @r.post("/v1/webhooks/{webhook_id}/test", status_code=202)
    def test_webhook(webhook_id: int, db: DB, settings: AppSettings, principal: Admin) -> dict[str, Any]:
        """Queue a ``ping`` event for this webhook (sent by the next delivery pass)."""
        event_id = service(db, settings, principal).send_test(principal.organisation_id, webhook_id)
        return {"event_id": event_id}

    @r.get("/v1/webhooks/{webhook_id}/deliveries")
    def list_webhook_deliveries(
        webhook_id: int,
        db: DB,
        settings: AppSettings,
        principal: Admin,
        status: Annotated[str | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        before_id: Annotated[int | None, Query()] = None,
    ) -> dict[str, Any]:
        """The webhook's deliveries, newest first."""
        rows = service(db, settings, principal).list_deliveries(
            principal.organisation_id, webhook_id, status=status, limit=limit, before_id=before_id
        )
        return {"deliveries": [d.to_dict() for d in rows]}

    @r.post("/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver")
    def redeliver_webhook_delivery(
        webhook_id: int, delivery_id: int, db: DB, settings: AppSettings, principal: Admin
    ) -> dict[str, Any]:
        """Send a failed (or delivered) delivery again, with the same event id."""
        info = service(db, settings, principal).redeliver(principal.organisation_id, delivery_id, webhook_id=webhook_id)
        return {"delivery": info.to_dict()}
