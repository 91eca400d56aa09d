"""Request dependencies: the database, the calling principal (from ``Authorization: Bearer``) and scope checks.

Every route under ``/v1`` either is listed in :data:`PUBLIC_PATHS`, or takes :data:`CurrentPrincipal` and is listed
in :data:`ANY_KEY_PATHS`, or declares its scope with ``dependencies=[require_scope("...")]``. The scope lives on
the :class:`RequireScope` object so tests can read it from the app's routes: a route without a declared check fails
tests/test_api_auth.py.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from bastion.accounts.service import SCOPES, AccountService, Principal
from bastion.errors import Forbidden, Unauthenticated
from bastion.settings import Settings
from bastion.storage.db import Database

PUBLIC_PATHS = frozenset({"/v1/health"})
ANY_KEY_PATHS = frozenset({"/v1/me"})  # any valid key, whatever its scopes


def get_db(request: Request) -> Database:
    return request.app.state.db


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


DB = Annotated[Database, Depends(get_db)]
AppSettings = Annotated[Settings, Depends(get_app_settings)]


def get_principal(request: Request, db: DB) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise Unauthenticated("this endpoint needs an API key: send 'Authorization: Bearer <key>'")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("send the API key as 'Authorization: Bearer <key>'", code="invalid_api_key")
    principal = AccountService(db).authenticate(token.strip())
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


class RequireScope:
    """A dependency that lets a request through only when its key carries ``scope`` (or one of ``alternatives``)."""

    def __init__(self, scope: str, *alternatives: str) -> None:
        for s in (scope, *alternatives):
            if s not in SCOPES:
                raise ValueError(f"unknown scope {s!r}")
        self.scope = scope
        self.scopes = (scope, *alternatives)

    def __call__(self, principal: CurrentPrincipal) -> Principal:
        if not principal.scopes.intersection(self.scopes):
            wanted = " or ".join(repr(s) for s in self.scopes)
            raise Forbidden(f"this endpoint needs an API key with the {wanted} scope", scope=self.scope)
        return principal

    def __repr__(self) -> str:
        return f"RequireScope({', '.join(repr(s) for s in self.scopes)})"


def require_scope(scope: str, *alternatives: str) -> RequireScope:
    return RequireScope(scope, *alternatives)
