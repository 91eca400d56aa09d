"""What every console route shares: the signed-in user, role checks and the CSRF check.

- :func:`console_router` makes the APIRouter every console page module adds its routes to. It carries
  :func:`check_csrf` as a router dependency, so every POST/PUT/PATCH/DELETE under ``/console`` verifies a CSRF token
  (form field ``csrf_token`` or header ``X-CSRF-Token``) before its handler runs; missing or wrong: 403
  ``csrf_failed``. A new form cannot forget it, and tests/test_console_auth.py fails for a console route without it.
- :data:`ConsoleUser` (``current_user``): the signed-in :class:`~bastion.accounts.sessions.SessionUser`; without a
  live session a page GET is redirected to the login page, htmx and JSON requests get 401.
- ``require_role("lead")``: a dependency passing leads and admins (roles rank reviewer < lead < admin); others get
  403 ``forbidden_role``. Use it as ``user: Annotated[SessionUser, Depends(require_role("lead"))]``.
- :func:`csrf_token` gives templates the token for the current request (the session's secret, or before sign-in
  the value of the pre-session cookie, a double-submit token).
"""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from bastion.accounts.sessions import SessionService, SessionUser
from bastion.api.deps import get_app_settings, get_db
from bastion.errors import Forbidden, Unauthenticated

PREFIX = "/console"
SESSION_COOKIE = "bastion_session"
PRESESSION_CSRF_COOKIE = "bastion_csrf"  # double-submit token for forms shown before sign-in (login)
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
# Console paths reachable without a session (tests/test_console_auth.py checks every other one refuses).
PUBLIC_PATHS = frozenset({f"{PREFIX}/login", f"{PREFIX}/oidc/start", f"{PREFIX}/oidc/callback"})
# reviewer < lead < admin; an authority's people (role "authority") rank nowhere: no platform page admits them
_ROLE_RANK = {role: i for i, role in enumerate(("reviewer", "lead", "admin"))}


class LoginRequired(Unauthenticated):
    """No live session: pages redirect to the login page, htmx/JSON requests get 401."""

    code = "login_required"


class CsrfFailed(Forbidden):
    code = "csrf_failed"


def session_service(request: Request) -> SessionService:
    return SessionService(get_db(request), get_app_settings(request))


def optional_user(request: Request) -> SessionUser | None:
    """The signed-in user, or None (no cookie, unknown, revoked or expired session). Cached per request."""
    if "console_user" in request.scope.get("state", {}):
        return request.state.console_user
    token = request.cookies.get(SESSION_COOKIE, "")
    user = None
    if token:
        try:
            user = session_service(request).lookup(token)
        except Unauthenticated as exc:
            request.state.console_session_problem = exc.code
    request.state.console_user = user
    return user


def current_user(request: Request) -> SessionUser:
    """The signed-in user; LoginRequired (redirect to the login page for pages, 401 otherwise) without one."""
    user = optional_user(request)
    if user is None:
        problem = getattr(request.state, "console_session_problem", None)
        message = "your session has ended; please sign in again" if problem == "session_expired" else "please sign in"
        raise LoginRequired(message)
    return user


ConsoleUser = Annotated[SessionUser, Depends(current_user)]


class RequireRole:
    """A dependency passing signed-in users whose role ranks at least ``minimum`` (reviewer < lead < admin)."""

    def __init__(self, minimum: str) -> None:
        if minimum not in _ROLE_RANK:
            raise ValueError(f"unknown role {minimum!r}")
        self.minimum = minimum

    def __call__(self, user: ConsoleUser) -> SessionUser:
        if _ROLE_RANK.get(user.role, -1) < _ROLE_RANK[self.minimum]:
            raise Forbidden(f"this page is for the {self.minimum} role and above", code="forbidden_role")
        return user

    def __repr__(self) -> str:
        return f"RequireRole({self.minimum!r})"


def require_role(minimum: str) -> RequireRole:
    return RequireRole(minimum)


def csrf_token(request: Request) -> str:
    """The CSRF token forms on this page must send back (``<input type=hidden name=csrf_token value=...>``).

    Signed in: the session's secret. Before sign-in: the pre-session cookie's value, created here when missing
    (the console sets the cookie on the response: see :func:`bastion.console.security.set_presession_cookie`).
    """
    user = optional_user(request)
    if user is not None:
        return user.csrf_secret
    existing = request.cookies.get(PRESESSION_CSRF_COOKIE, "")
    if 20 <= len(existing) <= 100:
        return existing
    minted = getattr(request.state, "console_new_csrf", None)
    if minted is None:
        minted = secrets.token_urlsafe(32)
        request.state.console_new_csrf = minted
    return minted


async def check_csrf(request: Request) -> None:
    """Router dependency: every unsafe request must carry the token :func:`csrf_token` gave its form."""
    if request.method in SAFE_METHODS:
        return
    sent = request.headers.get(CSRF_HEADER, "")
    if not sent:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()  # Starlette caches it: the handler's Form(...) fields read the same
            value = form.get(CSRF_FIELD)
            sent = value if isinstance(value, str) else ""
    user = optional_user(request)
    expected = user.csrf_secret if user is not None else request.cookies.get(PRESESSION_CSRF_COOKIE, "")
    if not sent or not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfFailed("the form's security token is missing or wrong; reload the page and try again")


def console_router() -> APIRouter:
    """The router console page modules add routes to (HTML by default, CSRF checked on every unsafe method)."""
    return APIRouter(prefix=PREFIX, dependencies=[Depends(check_csrf)], default_response_class=HTMLResponse)


def client_address(request: Request) -> str:
    """The peer's address (Bastion does not trust X-Forwarded-For: behind a proxy every client shares its address,
    so raise login_max_failures_per_client accordingly)."""
    return request.client.host if request.client else "unknown"


def wants_json(request: Request) -> bool:
    """htmx and API-style callers get JSON/401 answers instead of pages and redirects."""
    if request.headers.get("HX-Request"):
        return True
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


__all__ = [
    "ConsoleUser",
    "CsrfFailed",
    "LoginRequired",
    "RequireRole",
    "check_csrf",
    "client_address",
    "console_router",
    "csrf_token",
    "current_user",
    "optional_user",
    "require_role",
]
