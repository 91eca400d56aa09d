"""The review console's sign-in layer: sessions, throttling, CSRF, cookies, headers, roles and the OIDC hook.

``test_every_console_route_needs_a_session`` is generated from the app's routes, like the API's scope matrix in
tests/test_api_auth.py: a /console route that is not in ``console.deps.PUBLIC_PATHS`` and does not take
``current_user`` (or ``require_role``) fails it, and so does one without the router's CSRF check.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

import pytest
from fastapi import Depends
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from bastion import audit
from bastion.accounts import passwords
from bastion.accounts.service import AccountService
from bastion.accounts.sessions import SessionService, SessionUser, VerifiedIdentity
from bastion.api.app import create_app
from bastion.console.deps import PUBLIC_PATHS, RequireRole, check_csrf, console_router, current_user, require_role
from bastion.errors import InvalidInput, Unauthenticated
from bastion.settings import Settings
from bastion.storage.models import LoginAttempt, UserSession, utcnow

PASSWORD = "correct horse battery"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def app(db, settings):
    return create_app(db, settings)


@pytest.fixture
def client(app):
    with TestClient(app) as c:
        yield c


def make_user(db, org: str, email: str, role: str = "reviewer", password: str | None = PASSWORD) -> int:
    svc = AccountService(db)
    if org not in {o.name for o in svc.list_organisations()}:
        svc.create_organisation(org)
    user = svc.create_user(org, email, role)
    if password is not None:
        svc.set_password(org, user.id, password)
    return user.id


def csrf_of(client: TestClient, path: str = "/console/login") -> str:
    r = client.get(path)
    m = CSRF_RE.search(r.text)
    assert m, (r.status_code, r.text[:500])
    return m.group(1)


def login(client: TestClient, email: str, password: str = PASSWORD, organisation: str = ""):
    token = csrf_of(client)
    data = {"csrf_token": token, "email": email, "password": password, "organisation": organisation}
    return client.post("/console/login", data=data, follow_redirects=False)


def _depends_on(route: APIRoute, wanted) -> bool:  # noqa: ANN001 - a predicate on a dependency's callable
    stack = [route.dependant]
    while stack:
        d = stack.pop()
        if wanted(d.call):
            return True
        stack.extend(d.dependencies)
    return False


def _console_routes(app) -> list[tuple[str, str, APIRoute]]:
    out = []
    for route in app.routes:
        if isinstance(route, APIRoute) and route.path.startswith("/console"):
            out.extend((m, route.path, route) for m in sorted(route.methods))
    return out


# -- the route matrix -----------------------------------------------------------------------------------------------


def test_every_console_route_needs_a_session(db, app, client):
    routes = _console_routes(app)
    assert {("GET", "/console/"), ("POST", "/console/logout"), ("POST", "/console/login")} <= {
        (m, p) for m, p, _ in routes
    }
    token = csrf_of(client)  # a valid pre-session CSRF pair: what refuses the request must be the session check
    for method, path, route in routes:
        assert _depends_on(route, lambda c: c is check_csrf), f"{method} {path} is not on the console router"
        if path in PUBLIC_PATHS:
            continue
        assert _depends_on(route, lambda c: c is current_user or isinstance(c, RequireRole)), (
            f"{method} {path} takes no ConsoleUser / require_role(...): anyone could call it"
        )
        url = re.sub(r"\{[^}]+\}", "1", path)
        headers = {"X-CSRF-Token": token}
        r = client.request(method, url, headers=headers, follow_redirects=False)
        if method == "GET":
            assert r.status_code == 303 and r.headers["location"].startswith("/console/login?next="), (method, path)
        else:
            assert r.status_code == 401, (method, path, r.status_code)
        r = client.request(method, url, headers={**headers, "HX-Request": "true"}, follow_redirects=False)
        assert (r.status_code, r.json()["error"]["code"]) == (401, "login_required"), (method, path)
        assert r.headers["HX-Redirect"] == "/console/login"


def test_a_console_route_without_the_session_check_fails_the_matrix(db, settings):
    """The matrix's own check: a route added without ConsoleUser is caught by the dependency walk."""
    app = create_app(db, settings)
    router = console_router()

    @router.get("/forgotten")
    def forgotten() -> str:
        return "anyone"

    app.router.routes.extend(router.routes)
    route = next(r for r in app.routes if getattr(r, "path", "") == "/console/forgotten")
    assert _depends_on(route, lambda c: c is check_csrf)
    assert not _depends_on(route, lambda c: c is current_user or isinstance(c, RequireRole))


# -- sign-in ---------------------------------------------------------------------------------------------------------


def test_login_shows_home_and_sets_strict_http_only_cookie(db, client):
    make_user(db, "acme", "ana@acme.example", "lead")
    r = login(client, "ana@acme.example")
    assert r.status_code == 303 and r.headers["location"] == "/console/"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("bastion_session=") and "HttpOnly" in cookie and "Path=/console" in cookie
    assert "samesite=strict" in cookie.lower() and "Secure" not in cookie  # plain http, no setting
    home = client.get("/console/")
    assert home.status_code == 200
    assert "ana@acme.example" in home.text and "acme" in home.text and "lead" in home.text
    token = cookie.split(";")[0].split("=", 1)[1]
    with db.session() as s:  # only the token's hash is stored
        stored = s.scalar(select(UserSession.token_hash))
    assert stored != token and len(stored) == 64


def test_cookie_is_secure_over_https_or_by_setting(db, settings):
    make_user(db, "acme", "ana@acme.example")
    with TestClient(create_app(db, settings), base_url="https://testserver") as c:
        assert "Secure" in login(c, "ana@acme.example").headers["set-cookie"]
    secure = Settings(**{**settings.model_dump(), "console_secure_cookies": True})
    with TestClient(create_app(db, secure)) as c:  # behind a TLS proxy: the app sees http, the browser https
        assert "Secure" in c.get("/console/login").headers["set-cookie"]


def test_security_headers_on_console_responses_only(db, client):
    for path in ("/console/login", "/console/static/console.css", "/console/no-such-page"):
        r = client.get(path)
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
    assert client.get("/console/login").headers["cache-control"] == "no-store"
    assert "content-security-policy" not in client.get("/v1/health").headers


def test_console_errors_are_pages_and_api_errors_stay_json(client):
    r = client.get("/console/no-such-page")
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html") and "not_found" in r.text
    r = client.get("/v1/no-such-thing")
    assert r.json() == {"error": {"code": "not_found", "message": "Not Found"}}


def test_wrong_password_and_unknown_address_look_the_same(db, client):
    make_user(db, "acme", "ana@acme.example")
    wrong = login(client, "ana@acme.example", "not the right password")
    unknown = login(client, "nobody@acme.example", "not the right password")
    for r in (wrong, unknown):
        assert r.status_code == 401 and 'data-code="invalid_credentials"' in r.text
        assert "bastion_session" not in r.headers.get("set-cookie", "")
    assert wrong.text.replace("ana@", "X@") == unknown.text.replace("nobody@", "X@")


def test_unknown_address_still_costs_a_verification(db, settings, monkeypatch):
    calls = []
    monkeypatch.setattr("bastion.accounts.sessions.dummy_verify", lambda: calls.append(1))
    with pytest.raises(Unauthenticated):
        SessionService(db, settings).sign_in("nobody@acme.example", PASSWORD)
    assert calls == [1]


def test_disabled_user_and_user_without_password_cannot_sign_in(db, client):
    uid = make_user(db, "acme", "ana@acme.example", "reviewer")
    make_user(db, "acme", "boss@acme.example", "admin")
    make_user(db, "acme", "nopw@acme.example", password=None)
    assert login(client, "ana@acme.example").status_code == 303
    assert client.get("/console/").status_code == 200
    AccountService(db).set_disabled("acme", uid, True)
    assert client.get("/console/", follow_redirects=False).status_code == 303  # the live session ended
    r = login(client, "ana@acme.example")
    assert r.status_code == 401 and "invalid_credentials" in r.text
    r = login(client, "nopw@acme.example", "")
    assert r.status_code in (401, 422)
    r = login(client, "nopw@acme.example", PASSWORD)
    assert r.status_code == 401 and "invalid_credentials" in r.text
    AccountService(db).set_disabled("acme", uid, False)
    assert login(client, "ana@acme.example").status_code == 303


def test_last_enabled_admin_cannot_be_disabled(db):
    uid = make_user(db, "acme", "boss@acme.example", "admin")
    with pytest.raises(Exception) as exc:  # noqa: PT011 - Conflict
        AccountService(db).set_disabled("acme", uid, True)
    assert getattr(exc.value, "code", "") == "last_admin"


def test_password_change_and_deletion_revoke_sessions(db, client, settings):
    uid = make_user(db, "acme", "ana@acme.example")
    make_user(db, "acme", "boss@acme.example", "admin")
    login(client, "ana@acme.example")
    assert client.get("/console/").status_code == 200
    AccountService(db).set_password("acme", uid, "a brand new passphrase")
    assert client.get("/console/", follow_redirects=False).status_code == 303
    assert login(client, "ana@acme.example").status_code == 401  # the old password is gone
    assert login(client, "ana@acme.example", "a brand new passphrase").status_code == 303
    assert client.get("/console/").status_code == 200
    AccountService(db).delete_user("acme", uid)
    assert client.get("/console/", follow_redirects=False).status_code == 303


def test_session_idle_timeout_and_absolute_expiry(db, client, settings):
    make_user(db, "acme", "ana@acme.example")
    login(client, "ana@acme.example")
    assert client.get("/console/").status_code == 200
    idle = timedelta(minutes=settings.console_session_idle_minutes, seconds=1)
    with db.session() as s:
        s.execute(update(UserSession).values(last_seen_at=utcnow() - idle))
    r = client.get("/console/", follow_redirects=False)
    assert r.status_code == 303 and "bastion_session" in r.headers.get("set-cookie", "")  # the stale cookie goes
    login(client, "ana@acme.example")
    with db.session() as s:
        s.execute(update(UserSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    r = client.get("/console/", headers={"Accept": "application/json"}, follow_redirects=False)
    assert r.status_code == 401
    with pytest.raises(Unauthenticated) as exc:
        SessionService(db, settings).lookup(client.cookies.get("bastion_session") or "x")
    assert exc.value.code in ("session_expired", "invalid_session")


def test_session_lookup_codes(db, settings):
    make_user(db, "acme", "ana@acme.example")
    svc = SessionService(db, settings)
    new = svc.sign_in("ana@acme.example", PASSWORD)
    assert svc.lookup(new.token).email == "ana@acme.example"
    with db.session() as s:
        s.execute(update(UserSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    with pytest.raises(Unauthenticated) as exc:
        svc.lookup(new.token)
    assert exc.value.code == "session_expired"
    with pytest.raises(Unauthenticated) as exc:
        svc.lookup("not-a-token")
    assert exc.value.code == "invalid_session"


def test_logout_revokes_the_session(db, client):
    make_user(db, "acme", "ana@acme.example")
    login(client, "ana@acme.example")
    token = csrf_of(client, "/console/")
    r = client.post("/console/logout", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/console/login"
    with db.session() as s:
        assert s.scalar(select(UserSession.revoked_at)) is not None
    assert client.get("/console/", follow_redirects=False).status_code == 303
    actions = [rec["action"] for rec in audit.list_records(db, None)]
    assert actions.count("login") == 1 and actions.count("logout") == 1 and "password_set" in actions


def test_next_parameter_stays_inside_the_console(db, client):
    make_user(db, "acme", "ana@acme.example")
    for target, expected in (
        ("/console/x", "/console/x"),
        ("//evil.example/x", "/console/"),
        ("https://e.x", "/console/"),
    ):
        client.cookies.clear()
        token = csrf_of(client)
        data = {"csrf_token": token, "email": "ana@acme.example", "password": PASSWORD, "next": target}
        r = client.post("/console/login", data=data, follow_redirects=False)
        assert r.headers["location"] == expected
    r = client.get("/console/login?next=/console/", follow_redirects=False)  # already signed in
    assert r.status_code == 303


# -- throttling ------------------------------------------------------------------------------------------------------


def test_throttle_by_address_refuses_without_checking_the_password(db, client, monkeypatch):
    make_user(db, "acme", "ana@acme.example")
    for _ in range(5):
        assert login(client, "ana@acme.example", "wrong password!!").status_code == 401
    checked = []
    real = passwords.verify_password
    monkeypatch.setattr("bastion.accounts.sessions.verify_password", lambda h, p: checked.append(1) or real(h, p))
    r = login(client, "ana@acme.example")  # the right password, too late
    assert r.status_code == 429 and 'data-code="too_many_attempts"' in r.text and not checked
    with db.session() as s:  # the failures are old now: the window has passed
        s.execute(update(LoginAttempt).values(at=utcnow() - timedelta(minutes=16)))
    assert login(client, "ana@acme.example").status_code == 303


def test_a_success_clears_the_address_count(db, client):
    make_user(db, "acme", "ana@acme.example")
    for _ in range(4):
        login(client, "ana@acme.example", "wrong password!!")
    assert login(client, "ana@acme.example").status_code == 303
    for _ in range(4):
        assert login(client, "ana@acme.example", "wrong password!!").status_code == 401
    assert login(client, "ana@acme.example").status_code == 303


def test_throttle_by_client_address(db, settings):
    tight = Settings(**{**settings.model_dump(), "login_max_failures_per_client": 3})
    make_user(db, "acme", "ana@acme.example")
    with TestClient(create_app(db, tight)) as c:
        for i in range(3):
            assert login(c, f"guess{i}@acme.example", "wrong password!!").status_code == 401
        assert login(c, "ana@acme.example").status_code == 429
    with db.session() as s:
        assert s.scalar(select(func.count(LoginAttempt.id)).where(LoginAttempt.ok.is_(False))) == 3


# -- CSRF ------------------------------------------------------------------------------------------------------------


def test_csrf_missing_or_forged_is_refused(db, client):
    make_user(db, "acme", "ana@acme.example")
    base = {"email": "ana@acme.example", "password": PASSWORD}
    csrf_of(client)  # the pre-session cookie exists; the form field does not
    for data in (base, {**base, "csrf_token": "forged-forged-forged-forged"}):
        r = client.post("/console/login", data=data, follow_redirects=False)
        assert r.status_code == 403 and 'data-code="csrf_failed"' in r.text
    login(client, "ana@acme.example")
    pre_session = csrf_of(client, "/console/login?next=/console/x")  # redirected home: the session's token
    for headers in ({}, {"X-CSRF-Token": "forged"}, {"Accept": "application/json"}):
        r = client.post("/console/logout", headers=headers, follow_redirects=False)
        assert r.status_code == 403
    r = client.post("/console/logout", headers={"Accept": "application/json"})
    assert r.json()["error"]["code"] == "csrf_failed"
    assert client.get("/console/").status_code == 200  # still signed in
    r = client.post("/console/logout", headers={"X-CSRF-Token": pre_session}, follow_redirects=False)
    assert r.status_code == 303  # the header form of the token works too


def test_another_sessions_token_is_refused(db, app):
    make_user(db, "acme", "ana@acme.example")
    make_user(db, "acme", "bo@acme.example")
    with TestClient(app) as a, TestClient(app) as b:
        login(a, "ana@acme.example")
        login(b, "bo@acme.example")
        a_token = csrf_of(a, "/console/")
        r = b.post("/console/logout", data={"csrf_token": a_token}, follow_redirects=False)
        assert r.status_code == 403 and "csrf_failed" in r.text


# -- organisations sharing an address --------------------------------------------------------------------------------


def test_same_address_in_two_organisations(db, client):
    make_user(db, "acme", "ana@shared.example", "lead", password=PASSWORD)
    make_user(db, "globex", "ana@shared.example", "reviewer", password="another long passphrase")
    assert login(client, "ana@shared.example", "another long passphrase").status_code == 303  # only globex's fits
    assert "globex" in client.get("/console/").text
    client.cookies.clear()
    make_user(db, "initech", "ana@shared.example", "admin", password=PASSWORD)  # now two fit PASSWORD
    r = login(client, "ana@shared.example")
    assert r.status_code == 400 and 'data-code="organisation_required"' in r.text and 'id="organisation"' in r.text
    r = login(client, "ana@shared.example", organisation="initech")
    assert r.status_code == 303
    home = client.get("/console/").text
    assert "initech" in home and "admin" in home
    r = login(client, "ana@shared.example", organisation="globex")  # the wrong organisation for this password
    assert r.status_code in (303, 401)


def test_sign_in_service_asks_for_the_organisation(db, settings):
    make_user(db, "acme", "ana@shared.example")
    make_user(db, "globex", "ana@shared.example")
    with pytest.raises(InvalidInput) as exc:
        SessionService(db, settings).sign_in("ana@shared.example", PASSWORD)
    assert exc.value.code == "organisation_required"
    assert SessionService(db, settings).sign_in("ana@shared.example", PASSWORD, "globex").user.organisation_name == (
        "globex"
    )


# -- roles -----------------------------------------------------------------------------------------------------------


def test_require_role(db, settings):
    app = create_app(db, settings)
    router = console_router()

    @router.get("/leads-only")
    def leads_only(user: Annotated[SessionUser, Depends(require_role("lead"))]) -> str:
        return f"hello {user.role}"

    app.router.routes.extend(router.routes)
    make_user(db, "acme", "rev@acme.example", "reviewer")
    make_user(db, "acme", "lead@acme.example", "lead")
    make_user(db, "acme", "boss@acme.example", "admin")
    with TestClient(app) as c:
        login(c, "rev@acme.example")
        r = c.get("/console/leads-only")
        assert r.status_code == 403 and "forbidden_role" in r.text
        for email in ("lead@acme.example", "boss@acme.example"):
            c.cookies.clear()
            login(c, email)
            assert c.get("/console/leads-only").status_code == 200
    with pytest.raises(ValueError):
        require_role("emperor")


# -- passwords -------------------------------------------------------------------------------------------------------


def test_passwords_argon2id_min_length_and_rehash(db, settings):
    with pytest.raises(InvalidInput) as exc:
        passwords.hash_password("short")
    assert exc.value.code == "weak_password"
    with pytest.raises(InvalidInput):
        passwords.hash_password(" " * 20)
    h = passwords.hash_password(PASSWORD)
    assert h.startswith("$argon2id$") and passwords.verify_password(h, PASSWORD)
    assert not passwords.verify_password(h, PASSWORD + "x") and not passwords.verify_password("garbage", PASSWORD)
    assert not passwords.needs_rehash(h)
    from argon2 import PasswordHasher, Type

    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1, type=Type.ID).hash(PASSWORD)
    assert passwords.needs_rehash(weak)
    uid = make_user(db, "acme", "ana@acme.example", password=None)
    from bastion.storage.models import User

    with db.session() as s:
        s.execute(update(User).where(User.id == uid).values(password_hash=weak))
    SessionService(db, settings).sign_in("ana@acme.example", PASSWORD)
    with db.session() as s:
        stored = s.scalar(select(User.password_hash).where(User.id == uid))
    assert stored != weak and not passwords.needs_rehash(stored)


def test_cli_sets_password_from_stdin_never_argv(db):
    from bastion.cli.main import app as cli

    make_user(db, "acme", "ana@acme.example", password=None)
    runner = CliRunner()
    r = runner.invoke(
        cli, ["user", "password", "ana@acme.example", "--org", "acme", "--password-stdin"], input="short\n"
    )
    assert r.exit_code == 2 and "12 characters" in r.output
    args = ["user", "password", "ana@acme.example", "--org", "acme", "--password-stdin"]
    r = runner.invoke(cli, args, input=PASSWORD + "\n")
    assert r.exit_code == 0, r.output
    assert PASSWORD not in r.output
    r = runner.invoke(
        cli, ["user", "password", "ana@acme.example", "--org", "acme"], input=f"{PASSWORD}2\n{PASSWORD}2\n"
    )
    assert r.exit_code == 0, r.output
    assert SessionService(db, Settings()).sign_in("ana@acme.example", PASSWORD + "2").user.email == "ana@acme.example"
    r = runner.invoke(
        cli, ["user", "password", "nobody@acme.example", "--org", "acme", "--password-stdin"], input="x\n"
    )
    assert r.exit_code == 3
    actions = [rec["action"] for rec in audit.list_records(db, None)]
    assert actions.count("password_set") == 2 and actions.count("login") == 1


# -- OIDC hook -------------------------------------------------------------------------------------------------------


class FakeProvider:
    """An identity provider that vouches for whatever ``?code=`` names (no network, no tokens)."""

    name = "Example SSO"

    def __init__(self) -> None:
        self.redirects: list[str] = []

    def authorization_url(self, state: str, redirect_uri: str) -> str:
        self.redirects.append(redirect_uri)
        return f"https://sso.example/authorize?state={state}"

    def verify_callback(self, params, redirect_uri: str) -> VerifiedIdentity:  # noqa: ANN001 - a mapping
        code = params.get("code", "")
        if code == "bad":
            raise Unauthenticated("the provider refused", code="oidc_failed")
        email, _, org = code.partition("|")
        return VerifiedIdentity(email=email, organisation=org or None)


def test_oidc_sign_in_maps_to_an_existing_user(db, settings):
    from bastion.console.oidc import IdentityProvider

    provider = FakeProvider()
    assert isinstance(provider, IdentityProvider)
    make_user(db, "acme", "ana@acme.example", "lead", password=None)  # SSO users need no password
    app = create_app(db, settings, identity_provider=provider)
    with TestClient(app) as c:
        assert "Sign in with Example SSO" in c.get("/console/login").text
        r = c.get("/console/oidc/start", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("https://sso.example/authorize?state=")
        state = r.headers["location"].split("state=")[1]
        cookie = r.headers["set-cookie"]
        assert "bastion_oidc_state=" in cookie and "samesite=lax" in cookie.lower() and "HttpOnly" in cookie
        assert provider.redirects == ["http://testserver/console/oidc/callback"]
        r = c.get("/console/oidc/callback", params={"state": "forged", "code": "ana@acme.example"})
        assert r.status_code == 401 and "oidc_state" in r.text
        r = c.get("/console/oidc/callback", params={"state": state, "code": "stranger@acme.example"})
        assert (
            r.status_code == 403
            and "unknown_user" in r.text
            and "bastion_session" not in r.headers.get("set-cookie", "")
        )
        r = c.get("/console/oidc/callback", params={"state": state, "code": "bad"})
        assert r.status_code == 401 and "oidc_failed" in r.text
        r = c.get("/console/oidc/callback", params={"state": state, "code": "ana@acme.example|acme"})
        assert r.status_code == 200 and 'http-equiv="refresh"' in r.text
        assert "bastion_session=" in r.headers["set-cookie"]
        home = c.get("/console/")
        assert home.status_code == 200 and "ana@acme.example" in home.text
    logins = [rec for rec in audit.list_records(db, None) if rec["action"] == "login"]
    assert logins[-1]["details"]["method"] == "oidc"
    with db.session() as s:  # nobody was created by signing in
        from bastion.storage.models import User

        assert s.scalar(select(func.count(User.id))) == 1


def test_oidc_routes_are_404_without_a_provider(client):
    assert client.get("/console/oidc/start").status_code == 404
    assert client.get("/console/oidc/callback?state=x").status_code == 404
    assert "Sign in with" not in client.get("/console/login").text
