"""Sign-in pages: login (GET/POST), logout (POST), the OIDC start and callback, and the home page."""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from bastion.accounts.sessions import TooManyAttempts
from bastion.console.deps import PREFIX, SESSION_COOKIE, ConsoleUser, client_address, optional_user, session_service
from bastion.console.oidc import IdentityProvider
from bastion.console.render import render, safe_next
from bastion.console.security import (
    OIDC_STATE_COOKIE,
    clear_session_cookie,
    set_oidc_state_cookie,
    set_session_cookie,
)
from bastion.errors import BastionError, InvalidInput, NotFound, Unauthenticated


def _provider(request: Request) -> IdentityProvider | None:
    return getattr(request.app.state, "identity_provider", None)


def _login_page(request: Request, status: int = 200, **context: object) -> Response:
    provider = _provider(request)
    ctx = {"provider_name": provider.name if provider else None, "next": safe_next(request.query_params.get("next"))}
    ctx.update(context)
    return render(request, "login.html", ctx, status_code=status)


def add_auth_routes(router: APIRouter) -> None:
    @router.get("/login", name="console_login")
    def login_form(request: Request) -> Response:
        """The sign-in form (a signed-in user goes straight home)."""
        if optional_user(request) is not None:
            return RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
        return _login_page(request)

    @router.post("/login", name="console_login_submit")
    def login(
        request: Request,
        email: Annotated[str, Form(max_length=400)] = "",
        password: Annotated[str, Form(max_length=2000)] = "",
        organisation: Annotated[str, Form(max_length=100)] = "",
        next: Annotated[str, Form(max_length=2000)] = "",  # noqa: A002 - the form field's name
    ) -> Response:
        """Check the e-mail address and password (and organisation, when the address is in several)."""
        form = {"email": email, "organisation": organisation, "next": safe_next(next)}
        try:
            new = session_service(request).sign_in(
                email,
                password,
                organisation or None,
                client=client_address(request),
                user_agent=request.headers.get("user-agent", ""),
            )
        except TooManyAttempts as exc:
            return _login_page(request, 429, error=exc.message, error_code=exc.code, **form)
        except (Unauthenticated, InvalidInput) as exc:
            status = 401 if isinstance(exc, Unauthenticated) else 400
            ask_org = exc.code == "organisation_required" or bool(organisation)
            return _login_page(request, status, error=exc.message, error_code=exc.code, ask_org=ask_org, **form)
        response = RedirectResponse(safe_next(next), status_code=303)
        set_session_cookie(request, response, new.token)
        return response

    @router.post("/logout", name="console_logout")
    def logout(request: Request, user: ConsoleUser) -> Response:
        """End this session and go back to the login page."""
        session_service(request).sign_out(request.cookies.get(SESSION_COOKIE, ""))
        response = RedirectResponse(f"{PREFIX}/login", status_code=303)
        clear_session_cookie(request, response)
        return response

    @router.get("/", name="console_home")
    def home(request: Request, user: ConsoleUser) -> Response:
        """Who is signed in: address, organisation and role."""
        return render(request, "home.html", {"title": "Home"})

    @router.get("/oidc/start", name="console_oidc_start")
    def oidc_start(request: Request) -> Response:
        """Send the browser to the configured identity provider (404 when none is configured)."""
        provider = _provider(request)
        if provider is None:
            raise NotFound("single sign-on is not configured")
        state = secrets.token_urlsafe(32)
        redirect_uri = str(request.url_for("console_oidc_callback"))
        response = RedirectResponse(provider.authorization_url(state, redirect_uri), status_code=303)
        set_oidc_state_cookie(request, response, state)
        return response

    @router.get("/oidc/callback", name="console_oidc_callback")
    def oidc_callback(request: Request) -> Response:
        """Back from the identity provider: check ``state``, let the provider verify, sign the mapped user in."""
        provider = _provider(request)
        if provider is None:
            raise NotFound("single sign-on is not configured")
        expected = request.cookies.get(OIDC_STATE_COOKIE, "")
        sent = request.query_params.get("state", "")
        try:
            if not expected or not sent or not hmac.compare_digest(expected.encode(), sent.encode()):
                raise Unauthenticated("the sign-in request expired or did not start here; try again", code="oidc_state")
            callback_uri = str(request.url_for("console_oidc_callback"))
            identity = provider.verify_callback(dict(request.query_params), callback_uri)
            new = session_service(request).sign_in_verified(
                identity, client=client_address(request), user_agent=request.headers.get("user-agent", "")
            )
        except BastionError as exc:
            return _login_page(request, exc.http_status, error=exc.message, error_code=exc.code)
        # A page, not a redirect: after the provider's cross-site redirect, a SameSite=Strict cookie would not be
        # sent on a redirected request, so the browser continues from this (same-site) page instead.
        response = render(request, "signed_in.html", {"target": f"{PREFIX}/"})
        set_session_cookie(request, response, new.token)
        response.delete_cookie(OIDC_STATE_COOKIE, path=f"{PREFIX}/oidc")
        return response
