"""The browser review console, served under ``/console`` by the same app as the API.

Server-rendered pages (Jinja2, no JavaScript build), signed in by a session cookie rather than an API key. The
pieces later pages reuse:

- ``deps.console_router()``: the APIRouter a page module adds routes to (CSRF checked on every unsafe method);
  ``deps.ConsoleUser`` / ``deps.current_user``, ``deps.require_role("lead")``, ``deps.csrf_token(request)``.
- ``render.render(request, "page.html", {...})``: templates extending ``base.html`` (blocks ``title``,
  ``content``, ``head``, ``scripts``); ``render.NAV`` names the navigation's pages.
- ``security``: cookie helpers and the security headers every console response gets.

:func:`install_console` adds it all to an app; a new page module defines ``add_xxx_routes(router)`` and is called
there, next to ``add_auth_routes`` (docs/console.md, "Adding a page").
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from bastion.console.deps import PREFIX, console_router
from bastion.console.render import STATIC_DIR
from bastion.console.security import SecurityHeadersMiddleware


def install_console(app: FastAPI, identity_provider: Any = None) -> None:
    """Add the console's routes, static files and security headers to ``app``.

    Routes are appended to the app's own route list (not ``include_router``, which newer FastAPI keeps as one opaque
    entry), so tests that walk ``app.routes`` see every console route with its dependencies.
    """
    from bastion.console.auth import add_auth_routes
    from bastion.console.compliance_pages import add_compliance_routes
    from bastion.console.lead_pages import add_lead_routes
    from bastion.console.order_pages import add_order_routes
    from bastion.console.review_pages import add_review_routes

    app.state.identity_provider = identity_provider
    router = console_router()
    add_auth_routes(router)
    add_review_routes(router)  # queues, item view, media, wellbeing: bastion.console.review_pages
    add_lead_routes(router)  # leads: dashboard, QA agreement, queue settings: bastion.console.lead_pages
    add_order_routes(router)  # orders (authorities and leads), escalations: bastion.console.order_pages
    add_compliance_routes(router)  # leads: orders' clocks, exposure, complaints, transparency: compliance_pages
    # Later page modules: add_queue_routes(router), add_item_routes(router), ... here.
    app.router.routes.extend(router.routes)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=str(STATIC_DIR)), name="console_static")
    app.add_middleware(SecurityHeadersMiddleware)


__all__ = ["install_console"]
