"""The hub's HTTP API (``bastion forum serve``): a FastAPI app of its own, separate from the platform API.

Every route but ``/forum/v1/health`` authenticates a member by ``Authorization: Bearer bfm_...``; incident routes
need a forum lead. Errors have the platform API's shape, ``{"error": {"code", "message", "details"}}``.
:data:`ROUTE_ACCESS` says who may call each route; tests/test_forum_hub.py walks ``app.routes`` against it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from bastion import __version__
from bastion.errors import BastionError, Forbidden, Unauthenticated
from bastion.forum.hub import MAX_BATCH, MAX_PAGE, HubMember, HubService
from bastion.storage.db import Database

# "METHOD path" -> "public" | "member" | "lead" (tests/test_forum_hub.py checks every route is listed and enforced)
ROUTE_ACCESS: dict[str, str] = {
    "GET /forum/v1/health": "public",
    "GET /forum/v1/me": "member",
    "PUT /forum/v1/me/public-key": "member",
    "GET /forum/v1/members": "member",
    "POST /forum/v1/contributions": "member",
    "GET /forum/v1/contributions/{contribution_id}": "member",
    "POST /forum/v1/retractions": "member",
    "POST /forum/v1/feedback": "member",
    "GET /forum/v1/signals": "member",
    "GET /forum/v1/incidents": "member",
    "POST /forum/v1/incidents": "lead",
    "DELETE /forum/v1/incidents/{name}": "lead",
}


def _hub(request: Request) -> HubService:
    return request.app.state.hub


def current_member(request: Request, hub: Annotated[HubService, Depends(_hub)]) -> HubMember:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise Unauthenticated("the forum API needs a member key: send 'Authorization: Bearer bfm_...'")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("send the member key as 'Authorization: Bearer <key>'", code="invalid_api_key")
    return hub.authenticate(token.strip())


def current_lead(member: Annotated[HubMember, Depends(current_member)]) -> HubMember:
    if not member.is_lead:
        raise Forbidden("this needs a forum lead", code="lead_only")
    return member


Hub = Annotated[HubService, Depends(_hub)]
Member = Annotated[HubMember, Depends(current_member)]
Lead = Annotated[HubMember, Depends(current_lead)]


class PublicKeyRequest(BaseModel):
    public_key: str = Field(min_length=1, max_length=64, description="Ed25519 public key: 32 bytes, base64.")


class BatchRequest(BaseModel):
    batch: int = Field(ge=1, description="The member's next batch number (its last accepted + 1).")
    items: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_BATCH)


class IncidentRequest(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    description: str = Field(default="", max_length=5000)
    window_hours: int = Field(default=24, ge=1, le=720, description="How far back members rescan their uploads.")


def _error(status: int, code: str, message: str, details: dict[str, Any] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status)


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(BastionError)
    async def bastion_error(request: Request, exc: BastionError) -> Response:
        return JSONResponse({"error": exc.to_dict()}, status_code=exc.http_status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        problems = [
            {"field": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", "")} for e in exc.errors()
        ]
        first = problems[0] if problems else {"field": "", "message": "invalid request"}
        return _error(422, "invalid_request", f"{first['field']}: {first['message']}", {"problems": problems})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        codes = {404: "not_found", 405: "method_not_allowed"}
        return _error(exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail))


def create_hub_app(db: Database) -> FastAPI:
    """The hub's app over its own database (migrated with Bastion's migrations: the ``forum_*`` tables)."""
    app = FastAPI(title="Bastion forum hub", version=__version__)
    app.state.db = db
    app.state.hub = HubService(db, "hub")
    _install_errors(app)

    @app.get("/forum/v1/health")
    def health() -> dict[str, str]:
        """Alive (no authentication)."""
        return {"status": "ok", "version": __version__}

    @app.get("/forum/v1/me")
    def me(hub: Hub, member: Member) -> dict[str, Any]:
        """The calling member: name, role, registered public key and last accepted batch number."""
        return {"member": hub.me(member)}

    @app.put("/forum/v1/me/public-key")
    def register_key(body: PublicKeyRequest, hub: Hub, member: Member) -> dict[str, Any]:
        """Register the member's Ed25519 public key (once; the operator replaces keys)."""
        return {"member": HubService(hub.db, member.actor).register_key(member.name, body.public_key)}

    @app.get("/forum/v1/members")
    def members(hub: Hub, member: Member) -> dict[str, Any]:
        """Every member's name, role and public key: what members verify contributions with (and pin)."""
        return {"members": [{k: m[k] for k in ("name", "role", "public_key")} for m in hub.list_members()]}

    @app.post("/forum/v1/contributions", status_code=201)
    def contribute(body: BatchRequest, hub: Hub, member: Member) -> dict[str, Any]:
        """A signed batch of hashes with labels; all stored or none."""
        return hub.contribute(member, body.batch, body.items)

    @app.get("/forum/v1/contributions/{contribution_id}")
    def get_contribution(contribution_id: int, hub: Hub, member: Member) -> dict[str, Any]:
        """One contribution with its consensus (any member may read any contribution: the forum shares them)."""
        return {"contribution": hub.get_contribution(contribution_id)}

    @app.post("/forum/v1/retractions")
    def retract(body: BatchRequest, hub: Hub, member: Member) -> dict[str, Any]:
        """A signed batch of retractions of the member's own contributions."""
        return hub.retract(member, body.batch, body.items)

    @app.post("/forum/v1/feedback")
    def feedback(body: BatchRequest, hub: Hub, member: Member) -> dict[str, Any]:
        """A signed batch of feedback on other members' contributions."""
        return hub.feedback(member, body.batch, body.items)

    @app.get("/forum/v1/signals")
    def signals(
        hub: Hub,
        member: Member,
        after: Annotated[str | None, Query(max_length=60)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1000,
    ) -> Response:
        """The delta feed after ``after`` (new, retracted, consensus changes), incident changes first."""
        # Already plain JSON types: answered directly, without FastAPI's per-value encoder (seconds per 10,000 rows).
        return JSONResponse(hub.changes(after, limit))

    @app.get("/forum/v1/incidents")
    def incidents(hub: Hub, member: Member) -> dict[str, Any]:
        """Every incident, active or not."""
        return {"incidents": hub.list_incidents()}

    @app.post("/forum/v1/incidents", status_code=201)
    def activate(body: IncidentRequest, hub: Hub, lead: Lead) -> dict[str, Any]:
        """A forum lead activates an incident (its contributions reach members first)."""
        return {"incident": hub.activate_incident(lead, body.name, body.description, body.window_hours)}

    @app.delete("/forum/v1/incidents/{name}")
    def deactivate(name: str, hub: Hub, lead: Lead) -> dict[str, Any]:
        """A forum lead ends an incident."""
        return {"incident": hub.deactivate_incident(lead, name)}

    return app
