"""Cookies and response headers of the console.

Cookies are HttpOnly, ``Path=/console``, ``Secure`` when the request came over https or
``BASTION_CONSOLE_SECURE_COOKIES`` is set, and ``SameSite=Strict``: a cross-site link or form never carries the
session. The one exception is the OIDC state cookie (``SameSite=Lax``, ``Path=/console/oidc``): the identity
provider sends the browser back with a cross-site top-level GET, which must carry it.

Every response under ``/console`` gets a strict Content-Security-Policy (scripts, styles and images from the console
itself only, no inline script, no framing), ``X-Frame-Options: DENY``, ``X-Content-Type-Options: nosniff``,
``Referrer-Policy: no-referrer``, and pages (not static files) ``Cache-Control: no-store``, since they may show
reviewed content.
"""

from __future__ import annotations

from fastapi import Request, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion.console.deps import PREFIX, PRESESSION_CSRF_COOKIE, SESSION_COOKIE

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)
OIDC_STATE_COOKIE = "bastion_oidc_state"
OIDC_PATH = f"{PREFIX}/oidc"


def secure_cookies(request: Request) -> bool:
    return request.url.scheme == "https" or bool(request.app.state.settings.console_secure_cookies)


def set_session_cookie(request: Request, response: Response, token: str) -> None:
    """The session cookie: a browser-session cookie (no Max-Age); the server ends the session itself."""
    response.set_cookie(
        SESSION_COOKIE, token, path=PREFIX, httponly=True, samesite="strict", secure=secure_cookies(request)
    )


def clear_session_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(
        SESSION_COOKIE, path=PREFIX, httponly=True, samesite="strict", secure=secure_cookies(request)
    )


def set_presession_cookie(request: Request, response: Response) -> None:
    """Set the pre-session CSRF cookie when :func:`~bastion.console.deps.csrf_token` minted a new value."""
    minted = getattr(request.state, "console_new_csrf", None)
    if minted:
        response.set_cookie(
            PRESESSION_CSRF_COOKIE,
            minted,
            path=PREFIX,
            httponly=True,
            samesite="strict",
            secure=secure_cookies(request),
        )


def set_oidc_state_cookie(request: Request, response: Response, state: str) -> None:
    response.set_cookie(
        OIDC_STATE_COOKIE,
        state,
        path=OIDC_PATH,
        max_age=600,
        httponly=True,
        samesite="lax",
        secure=secure_cookies(request),
    )


class SecurityHeadersMiddleware:
    """Adds :data:`SECURITY_HEADERS` to every response under ``/console`` (pure ASGI: no body buffering)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path == PREFIX or path.startswith(PREFIX + "/")):
            await self.app(scope, receive, send)
            return
        static = path.startswith(PREFIX + "/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers.extend(h for h in SECURITY_HEADERS if h[0] not in present)
                if not static and b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
