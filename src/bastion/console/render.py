"""Rendering console pages: one Jinja2 environment (autoescaped), the shared context, and the HTML error page.

Every template extends ``base.html`` and fills its blocks: ``title`` (the page's name, before " - Bastion"),
``content`` (inside ``<main id="main">``), and optionally ``head`` (extra ``<link>``s) and ``scripts`` (extra
``<script src>``: no inline script, the CSP forbids it). :func:`render` adds ``request``, ``user`` (the signed-in
:class:`~bastion.accounts.sessions.SessionUser` or None), ``nav`` and the ``csrf_token()`` and ``static_url()``
functions, and sets the pre-session CSRF cookie when the page minted one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from bastion.console.deps import PREFIX, csrf_token, optional_user, wants_json
from bastion.console.security import clear_session_cookie, set_presession_cookie

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"
templates = Jinja2Templates(directory=str(TEMPLATES_DIR))


@dataclass(frozen=True)
class NavItem:
    """One entry of the console's navigation. ``route`` is the route name (``name=`` on the route decorator) of
    the page; until a page of that name exists the entry shows as "coming soon", not as a broken link."""

    label: str
    route: str
    minimum_role: str = "reviewer"


# The pages later work adds: register a route with one of these names and the navigation links it.
NAV: list[NavItem] = [
    NavItem("Queues", "console_queues"),
    NavItem("Dashboard", "console_dashboard", "lead"),
    NavItem("Appeals", "console_appeals", "lead"),
    NavItem("Orders", "console_orders", "lead"),
    NavItem("Escalations", "console_escalations", "lead"),
    NavItem("Orders", "console_orders", "authority"),  # an authority's people: the orders it sent
    NavItem("Compliance", "console_compliance", "lead"),
    NavItem("Settings", "console_settings"),
]
_RANK = {"reviewer": 0, "lead": 1, "admin": 2}


def static_url(path: str) -> str:
    return f"{PREFIX}/static/{path}"


def _nav(request: Request, user: Any) -> list[dict[str, Any]]:
    if user is None:
        return []
    names = {getattr(r, "name", None): r for r in request.app.routes}
    items = []
    for item in NAV:
        if "authority" in (user.role, item.minimum_role):  # an authority's people see only their own pages
            if user.role != item.minimum_role:
                continue
        elif _RANK.get(user.role, -1) < _RANK.get(item.minimum_role, 0):
            continue
        route = names.get(item.route)
        href = route.path if route is not None and "{" not in getattr(route, "path", "{") else None
        items.append({"label": item.label, "href": href, "current": href is not None and request.url.path == href})
    return items


def render(request: Request, template: str, context: dict[str, Any] | None = None, status_code: int = 200) -> Response:
    """Render ``template`` with the console's shared context (see the module docstring)."""
    user = optional_user(request)
    ctx: dict[str, Any] = {
        "user": user,
        "nav": _nav(request, user),
        "csrf_token": lambda: csrf_token(request),
        "static_url": static_url,
        "prefix": PREFIX,
    }
    ctx.update(context or {})
    response = templates.TemplateResponse(request, template, ctx, status_code=status_code)
    set_presession_cookie(request, response)
    return response


_TITLES = {
    400: "Bad request",
    401: "Please sign in",
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed",
    409: "Conflict",
    422: "Bad request",
    429: "Too many attempts",
}


def console_error(request: Request, status: int, code: str, message: str) -> Response:
    """The console's answer to an error: a redirect to the login page for a page that needs a session, JSON (the
    API's shape) for htmx/JSON callers, and otherwise an HTML page with the status, code and message."""
    if status == 401 and request.method in ("GET", "HEAD") and not wants_json(request):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        response: Response = RedirectResponse(f"{PREFIX}/login?next={_quote(target)}", status_code=303)
        if request.cookies.get("bastion_session"):
            clear_session_cookie(request, response)
        return response
    if wants_json(request):
        response = JSONResponse({"error": {"code": code, "message": message}}, status_code=status)
        if status == 401:
            response.headers["HX-Redirect"] = f"{PREFIX}/login"
        return response
    try:
        heading = _TITLES.get(status, "Something went wrong")
        context = {"status": status, "code": code, "message": message, "heading": heading}
        return render(request, "error.html", context, status_code=status)
    except Exception:  # noqa: BLE001 - the error page itself must not fail
        return HTMLResponse(f"<!doctype html><title>Error {status}</title><p>{status} {code}</p>", status_code=status)


def _quote(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="/")


def safe_next(target: str | None) -> str:
    """A post-login destination: a path inside the console, never another site (``//evil``, ``/\\evil``)."""
    if not target or not target.startswith(PREFIX + "/") or target.startswith("//") or "\\" in target:
        return PREFIX + "/"
    if any(ord(c) < 32 for c in target):
        return PREFIX + "/"
    return target
