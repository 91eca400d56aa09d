"""User routes (``admin`` scope), all within the caller's organisation (another organisation's user: 404
``user_not_found``). Users are identities with a role (reviewer, lead, admin); sign-in comes with the console.

- ``GET /v1/users``, ``POST /v1/users`` {email, role} -> 201
- ``GET /v1/users/{user_id}``, ``PATCH /v1/users/{user_id}`` {role}, ``DELETE /v1/users/{user_id}``
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI
from pydantic import BaseModel, Field

from bastion.accounts.service import EMAIL_MAX, AccountService, Principal
from bastion.api.deps import DB, require_scope

Admin = Annotated[Principal, Depends(require_scope("admin"))]


class CreateUserRequest(BaseModel):
    email: str = Field(min_length=1, max_length=EMAIL_MAX + 50, description="Stripped; the domain is lower-cased.")
    role: str = Field(default="reviewer", max_length=64, description="reviewer, lead or admin.")


class UpdateUserRequest(BaseModel):
    role: str = Field(max_length=64, description="reviewer, lead or admin.")


def add_user_routes(r: FastAPI) -> None:
    """Added to the app itself (not a router) so the route-matrix test sees every endpoint."""

    def service(db: Any, principal: Principal) -> AccountService:
        return AccountService(db, f"api-key:{principal.key_id}")

    @r.get("/v1/users")
    def list_users(db: DB, principal: Admin) -> dict[str, Any]:
        """The caller's organisation's users."""
        return {"users": [u.to_dict() for u in service(db, principal).list_users(principal.organisation_id)]}

    @r.post("/v1/users", status_code=201)
    def create_user(body: CreateUserRequest, db: DB, principal: Admin) -> dict[str, Any]:
        """Add a user to the caller's organisation (409 ``user_exists`` when the address is already there)."""
        info = service(db, principal).create_user(principal.organisation_id, body.email, body.role)
        return {"user": info.to_dict()}

    @r.get("/v1/users/{user_id}")
    def get_user(user_id: int, db: DB, principal: Admin) -> dict[str, Any]:
        """One user of the caller's organisation."""
        return {"user": service(db, principal).get_user(principal.organisation_id, user_id).to_dict()}

    @r.patch("/v1/users/{user_id}")
    def update_user(user_id: int, body: UpdateUserRequest, db: DB, principal: Admin) -> dict[str, Any]:
        """Change a user's role (409 ``last_admin`` when it would leave the organisation without an admin user)."""
        info = service(db, principal).set_role(principal.organisation_id, user_id, body.role)
        return {"user": info.to_dict()}

    @r.delete("/v1/users/{user_id}")
    def delete_user(user_id: int, db: DB, principal: Admin) -> dict[str, Any]:
        """Remove a user from the caller's organisation (not its last admin user)."""
        return {"user": service(db, principal).delete_user(principal.organisation_id, user_id).to_dict()}
