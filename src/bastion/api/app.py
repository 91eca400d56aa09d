"""The FastAPI application: ``create_app(db, settings)`` wires routes, dependencies and the one error shape.

Every error leaves the API as ``{"error": {"code": ..., "message": ...}}`` with the error's HTTP status, whether it
is a :class:`~bastion.errors.BastionError`, a request that fails validation, or an unknown path.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from bastion import __version__
from bastion.accounts.service import AccountService, Principal
from bastion.api.compliance import add_compliance_routes
from bastion.api.content import install_content
from bastion.api.deps import DB, CurrentPrincipal, require_scope
from bastion.api.hma import add_hma_routes
from bastion.api.ops import install_ops
from bastion.api.orders import add_order_routes
from bastion.api.policy import add_policy_routes
from bastion.api.review import add_review_routes
from bastion.api.users import add_user_routes
from bastion.api.webhooks import add_webhook_routes
from bastion.banks.service import BankService
from bastion.console import install_console
from bastion.console.oidc import IdentityProvider
from bastion.errors import BastionError
from bastion.settings import Settings
from bastion.storage.db import Database

_STATUS_CODES = {401: "unauthenticated", 403: "forbidden", 404: "not_found", 405: "method_not_allowed"}


def _error(status: int, code: str, message: str, details: dict[str, Any] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status)


def _is_console(request: Request) -> bool:
    path = request.url.path
    return path == "/console" or path.startswith("/console/")


def _install_error_handlers(app: FastAPI) -> None:
    """JSON errors everywhere except under /console, which answers with pages (bastion.console.render)."""
    from bastion.console.render import console_error

    @app.exception_handler(BastionError)
    async def bastion_error(request: Request, exc: BastionError) -> Response:
        if _is_console(request):
            return console_error(request, exc.http_status, exc.code, exc.message)
        return JSONResponse({"error": exc.to_dict()}, status_code=exc.http_status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        problems = [
            {"field": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", "")} for e in exc.errors()
        ]
        first = problems[0] if problems else {"field": "", "message": "invalid request"}
        if _is_console(request):
            return console_error(request, 422, "invalid_request", f"{first['field']}: {first['message']}")
        return _error(422, "invalid_request", f"{first['field']}: {first['message']}", {"problems": problems})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = _STATUS_CODES.get(exc.status_code, "http_error")
        if _is_console(request):
            return console_error(request, exc.status_code, code, str(exc.detail))
        return _error(exc.status_code, code, str(exc.detail))


class CreateKeyRequest(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    scopes: list[str] = Field(min_length=1)
    expires_days: int | None = Field(default=None, ge=1, le=3650)


class ShareRequest(BaseModel):
    organisation: str = Field(min_length=1, max_length=100, description="The organisation's name.")


# Each route's scope is declared once, as a RequireScope dependency (tests read it from the routes).
Admin = Annotated[Principal, Depends(require_scope("admin"))]
Curator = Annotated[Principal, Depends(require_scope("curate"))]


def _add_v1_routes(r: FastAPI) -> None:
    """Routes are added to the app itself, not through ``include_router`` (which newer FastAPI resolves lazily),
    so ``app.routes`` lists every endpoint and the scope-matrix test sees them all."""

    @r.get("/v1/health")
    def health() -> dict[str, str]:
        """Alive (no authentication)."""
        return {"status": "ok", "version": __version__}

    @r.get("/v1/me")
    def me(principal: CurrentPrincipal) -> dict[str, Any]:
        """The calling key's organisation and scopes."""
        return {
            "organisation": {"id": principal.organisation_id, "name": principal.organisation_name},
            "key_id": principal.key_id,
            "scopes": sorted(principal.scopes),
        }

    @r.get("/v1/banks")
    def list_banks(db: DB, principal: Curator) -> dict[str, Any]:
        """The banks the caller's organisation owns (``access: "owner"``, with ``shared_with``) or was shared
        (``access: "shared"``, read only). Other organisations' banks and operator banks are not listed."""
        svc = BankService(db, organisation_id=principal.organisation_id)
        return {"banks": [b.to_dict() for b in svc.list_banks()]}

    @r.post("/v1/banks/{bank_name}/shares", status_code=201)
    def share_bank(bank_name: str, body: ShareRequest, db: DB, principal: Curator) -> dict[str, Any]:
        """Share one of the caller's banks, read only, with another organisation (by name); idempotent."""
        svc = BankService(db, f"api-key:{principal.key_id}", organisation_id=principal.organisation_id)
        return {"bank": svc.share_bank(bank_name, body.organisation).to_dict()}

    @r.delete("/v1/banks/{bank_name}/shares/{organisation}")
    def unshare_bank(bank_name: str, organisation: str, db: DB, principal: Curator) -> dict[str, Any]:
        """Stop sharing one of the caller's banks with an organisation (404 ``not_shared`` when it was not)."""
        svc = BankService(db, f"api-key:{principal.key_id}", organisation_id=principal.organisation_id)
        return {"bank": svc.unshare_bank(bank_name, organisation).to_dict()}

    @r.get("/v1/keys")
    def list_keys(db: DB, principal: Admin) -> dict[str, Any]:
        """The caller's organisation's keys (never their secrets)."""
        return {"keys": [k.to_dict() for k in AccountService(db).list_keys(principal.organisation_id)]}

    @r.post("/v1/keys", status_code=201)
    def create_key(body: CreateKeyRequest, db: DB, principal: Admin) -> dict[str, Any]:
        """A new key for the caller's organisation; ``api_key`` is shown in this response only."""
        expires = timedelta(days=body.expires_days) if body.expires_days else None
        actor = f"api-key:{principal.key_id}"
        info, plaintext = AccountService(db, actor).create_api_key(
            principal.organisation_id, body.name, body.scopes, expires
        )
        return {"key": info.to_dict(), "api_key": plaintext}

    @r.delete("/v1/keys/{key_id}")
    def revoke_key(key_id: int, db: DB, principal: Admin) -> dict[str, Any]:
        """Revoke one of the caller's organisation's keys; another organisation's key is not found."""
        info = AccountService(db, f"api-key:{principal.key_id}").revoke_key(
            key_id, organisation_id=principal.organisation_id
        )
        return {"key": info.to_dict()}


def create_app(db: Database, settings: Settings, identity_provider: IdentityProvider | None = None) -> FastAPI:
    """The app: the JSON API, the HMA-compatible routes and the review console (``identity_provider``: the
    console's single sign-on hook, see bastion.console.oidc)."""
    app = FastAPI(title="Bastion", version=__version__)
    app.state.db = db
    app.state.settings = settings
    _install_error_handlers(app)
    _add_v1_routes(app)
    add_hma_routes(app)  # HMA-compatible /status, /h, /m, /c (issue 3 §9)
    add_policy_routes(app)  # /v1/policy (issue 3 §4)
    add_webhook_routes(app)  # /v1/webhooks (issue 3 §6)
    add_user_routes(app)  # /v1/users (issue 3 §2)
    add_review_routes(app)  # /v1/content/{id}/appeals, /v1/appeals, /v1/review/... (issue 4)
    add_order_routes(app)  # /v1/orders, /v1/escalations: authorities (issue 6 §1-2)
    add_compliance_routes(app)  # complaints, statements of reasons, notices, preservation, transparency (issue 6)
    install_ops(app)  # /healthz, /readyz, /metrics, request ids
    install_content(app)  # POST/GET /v1/content, /v1/organisation (issue 3 §3); after install_ops (metrics)
    install_console(app, identity_provider)  # /console: the browser review console (issue 4)
    return app
