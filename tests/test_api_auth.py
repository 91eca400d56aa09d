"""The API's authentication, scopes, tenant isolation and error shape (FastAPI TestClient, SQLite and PostgreSQL).

``test_every_route_checks_key_and_scope`` is generated from the app's routes: a new /v1 endpoint that forgets its
check (or does not declare its scope with ``require_scope``) fails it.

``test_every_route_isolates_organisations`` is too: every path parameter of every guarded route must be registered in
:data:`OWNED_BY_ORGANISATION` (a factory making organisation A's resource; organisation B, with every scope, must get
404 ``not_found`` or a resource's ``*_not_found`` for it, never 403, and A must find it) or :data:`NOT_OWNED_PARAMS`.
A new endpoint whose path parameter is in neither table fails the test until its author registers it.

Console routes (``/console``) authenticate by session, not key: tests/test_console_auth.py walks them the same way.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Callable

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import Mount, Route

from bastion.accounts.service import SCOPES, AccountService
from bastion.api.app import create_app
from bastion.api.deps import ANY_KEY_PATHS, PUBLIC_PATHS, RequireScope
from bastion.banks.service import BankService
from bastion.signals import Signal
from bastion.storage.db import Database

# -- the organisation dimension's registry: extend it with every new path parameter ---------------------------------
_seq = itertools.count(1)


def _bank_of(db: Database, org: str) -> str:
    """A block bank owned by ``org``, with one entry; returns its name (HMA's /c/bank/{bank_name}, /v1/banks/...)."""
    name = f"bank-{org}-{next(_seq)}"
    svc = BankService(db, organisation_id=AccountService(db).get_organisation(org).id)
    svc.create_bank(name)
    svc.add_entry(name, [Signal("md5", hashlib.md5(name.encode()).hexdigest())])
    return name


def _key_of(db: Database, org: str) -> str:
    """An API key of ``org``; returns its id (/v1/keys/{key_id})."""
    return str(AccountService(db).create_api_key(org, f"victim-{next(_seq)}", ["submit"])[0].id)


def _policy_version_of(db: Database, org: str) -> str:
    """A stored policy version of ``org``; returns its number (/v1/policy/versions/{version})."""
    from bastion.policy.engine import default_source
    from bastion.policy.service import PolicyService

    org_id = AccountService(db).get_organisation(org).id
    return str(PolicyService(db, "test").set_policy(org_id, default_source() + f"# {next(_seq)}\n").version)


def _webhook_of(db: Database, org: str) -> str:
    """A webhook of ``org``; returns its id (/v1/webhooks/{webhook_id}...)."""
    from bastion.settings import Settings
    from bastion.webhooks import WebhookService

    lab = Settings(webhook_allow_http=True, webhook_allow_private=True)  # a loopback URL; nothing is sent here
    org_id = AccountService(db).get_organisation(org).id
    return str(WebhookService(db, "test", lab).create(org_id, f"http://127.0.0.1:9/{next(_seq)}")[0].id)


def _delivery_of(db: Database, org: str) -> str:
    """A failed delivery to ``org``'s newest webhook (the one the route's {webhook_id} names); returns its id."""
    from sqlalchemy import func, select

    from bastion.storage.models import Event, Webhook, WebhookDelivery

    org_id = AccountService(db).get_organisation(org).id
    with db.session() as s:
        hook_id = s.scalar(select(func.max(Webhook.id)).where(Webhook.organisation_id == org_id))
    hook_id = hook_id or int(_webhook_of(db, org))
    with db.session() as s:
        event = Event(event_id=f"00000000-0000-4000-8000-{next(_seq):012d}", organisation_id=org_id, type="ping")
        event.payload = {}
        s.add(event)
        s.flush()
        delivery = WebhookDelivery(event_id=event.id, webhook_id=hook_id, status="failed", attempts=1)
        s.add(delivery)
        s.flush()
        return str(delivery.id)


def _content_of(db: Database, org: str) -> str:
    """A submission of ``org`` (pending, text); returns its id (/v1/content/{content_id})."""
    from bastion.storage.models import ContentItem

    org_id = AccountService(db).get_organisation(org).id
    with db.session() as s:
        item = ContentItem(organisation_id=org_id, external_id=f"post-{next(_seq)}", source="text", signals=[])
        s.add(item)
        s.flush()
        return str(item.id)


def _user_of(db: Database, org: str) -> str:
    """A reviewer user of ``org``; returns its id (/v1/users/{user_id})."""
    return str(AccountService(db).create_user(org, f"user{next(_seq)}@{org}.example", "reviewer").id)


def _appeal_of(db: Database, org: str) -> str:
    """An open appeal (a bare row) on a submission of ``org``; returns its id (/v1/appeals/{appeal_id})."""
    from bastion.storage.models import Appeal

    org_id = AccountService(db).get_organisation(org).id
    content_id = int(_content_of(db, org))
    with db.session() as s:
        appeal = Appeal(organisation_id=org_id, content_id=content_id, decision_id=0, reason="generated")
        s.add(appeal)
        s.flush()
        return str(appeal.id)


def _review_queue_of(db: Database, org: str) -> str:
    """A review queue defined by ``org``; returns its name (/v1/review/queues/{name})."""
    from bastion.review import ReviewService
    from bastion.settings import Settings

    org_id = AccountService(db).get_organisation(org).id
    return ReviewService(db, Settings()).create_queue("test", org_id, f"queue-{next(_seq)}")["name"]


def _complaint_of(db: Database, org: str) -> str:
    """A complaint (bare rows: appeal and complaint) on a submission of ``org`` (/v1/complaints/{complaint_id})."""
    from bastion.storage.models import Complaint, utcnow

    org_id = AccountService(db).get_organisation(org).id
    appeal_id = int(_appeal_of(db, org))
    with db.session() as s:
        c = Complaint(organisation_id=org_id, content_id=0, appeal_id=appeal_id, regime="dsa", deadline_at=utcnow())
        s.add(c)
        s.flush()
        return str(c.id)


def _preservation_of(db: Database, org: str) -> str:
    """A purged preservation record of ``org`` (/v1/preservation/{preservation_id}/...)."""
    from bastion.storage.models import PreservedContent, utcnow

    org_id = AccountService(db).get_organisation(org).id
    with db.session() as s:
        row = PreservedContent(organisation_id=org_id, content_id=0, decision_id=next(_seq), key_id="test",
                               expires_at=utcnow(), purged_at=utcnow(), extensions=[])
        s.add(row)
        s.flush()
        return str(row.id)


def _transparency_report_of(db: Database, org: str) -> str:
    """A published transparency report of ``org`` (/v1/compliance/transparency/reports/{report_id})."""
    from datetime import UTC, datetime

    from bastion.compliance import transparency

    org_id = AccountService(db).get_organisation(org).id
    start = datetime(2024, 1, 1, tzinfo=UTC)
    return str(transparency.publish(db, "test", org_id, start, start.replace(year=2025))["id"])


def _order_of(db: Database, org: str, *, as_authority: bool = False) -> str:
    """A removal order sent to ``org`` (or, ``as_authority``, sent by ``org`` to a fresh platform), waiting for review;
    returns its id (/v1/orders/{order_id}...)."""
    from bastion.storage.models import Authority, AuthorityPlatform, ContentItem, Order, OrderTarget, utcnow

    n = next(_seq)
    accounts = AccountService(db)
    org_id = accounts.get_organisation(org).id
    other_id = accounts.create_organisation(f"party-{n}").id
    authority_org, platform_org = (org_id, other_id) if as_authority else (other_id, org_id)
    with db.session() as s:
        authority = s.query(Authority).filter_by(organisation_id=authority_org).one_or_none()
        if authority is None:
            authority = Authority(organisation_id=authority_org, kind="competent_authority", member_state="DE")
            s.add(authority)
            s.flush()
        s.add(AuthorityPlatform(authority_id=authority.id, organisation_id=platform_org))
        item = ContentItem(organisation_id=platform_org, external_id=f"post-{n}", source="text", signals=[])
        s.add(item)
        s.flush()
        now = utcnow()
        order = Order(authority_id=authority.id, organisation_id=platform_org, kind="removal_order", reference=f"o-{n}",
                      issuer="x", member_state="DE", legal_basis="TCO", reasons="x", issued_at=now, received_at=now,
                      status="pending_review", alerts=[], confirmation={}, cannot_comply_explanation="",
                      clarification="")
        s.add(order)
        s.flush()
        s.add(OrderTarget(order_id=order.id, organisation_id=platform_org, reference=f"post-{n}", content_id=item.id))
        return str(order.id)


def _escalation_of(db: Database, org: str) -> str:
    """A threat-to-life escalation (a bare row) of ``org``; returns its id (/v1/escalations/{escalation_id})."""
    from bastion.storage.models import Escalation

    org_id = AccountService(db).get_organisation(org).id
    with db.session() as s:
        esc = Escalation(organisation_id=org_id, content_id=int(_content_of(db, org)), decision_id=next(_seq),
                         jurisdiction="EU", status="no_contact", evidence={}, actor="test")
        s.add(esc)
        s.flush()
        return str(esc.id)


# Path parameter -> factory(db, owner organisation name) -> the path value naming a fresh resource of that owner.
# A parameter name that means different things on different routes (e.g. "id") is registered per route instead,
# keyed "<path>:<param>" (e.g. "/v1/webhooks/{id}:id").
OWNED_BY_ORGANISATION: dict[str, Callable[[Database, str], str]] = {
    "bank_name": _bank_of,
    "key_id": _key_of,
    "content_id": _content_of,
    "/v1/policy/versions/{version}:version": _policy_version_of,
    "webhook_id": _webhook_of,
    "delivery_id": _delivery_of,  # after webhook_id in the route's path: a delivery of that webhook
    "user_id": _user_of,
    "appeal_id": _appeal_of,
    "/v1/review/queues/{name}:name": _review_queue_of,
    "order_id": _order_of,  # the caller is the platform the order was sent to
    "/v1/orders/{order_id}/clarification:order_id": lambda db, org: _order_of(db, org, as_authority=True),
    "escalation_id": _escalation_of,
    "complaint_id": _complaint_of,
    "preservation_id": _preservation_of,
    "report_id": _transparency_report_of,
}
# Path parameters that name nothing an organisation owns, with the value to use (the route's other parameters
# carry the owned resource). "organisation": the organisation a bank is shared with.
NOT_OWNED_PARAMS: dict[str, Callable[[Database, str], str]] = {
    "organisation": lambda db, owner: "org-b",
}
# Parameters of routes being written concurrently (issue 3) whose factories are not registered yet: their routes are
# skipped here. Remove a name as soon as its factory is in OWNED_BY_ORGANISATION.
PENDING_PARAMS: set[str] = set()
# Bodies for routes whose handler would otherwise refuse the request before it looks the resource up (422).
ISOLATION_BODIES: dict[tuple[str, str], dict] = {
    ("POST", "/v1/banks/{bank_name}/shares"): {"organisation": "org-b"},
    ("PATCH", "/v1/users/{user_id}"): {"role": "lead"},
    ("POST", "/v1/orders/{order_id}/cannot-comply"): {"reason": "manifest_error", "explanation": "wrong URL"},
    ("POST", "/v1/orders/{order_id}/clarification"): {"clarification": "the right URL"},
    ("POST", "/v1/content/{content_id}/complaints"): {"regime": "tco"},
    ("POST", "/v1/content/{content_id}/notice-delay"): {"requested_by": "OCLCTIC", "reference": "R-1"},
    ("POST", "/v1/preservation/{preservation_id}/read"): {"purpose": "authority request"},
    ("POST", "/v1/preservation/{preservation_id}/extend"): {
        "until": "2030-01-01T00:00:00Z", "requested_by": "court", "reference": "RG 1"},
}


@pytest.fixture
def app(db, settings):
    return create_app(db, settings)


@pytest.fixture
def client(app):
    with TestClient(app) as c:
        yield c


def _key(db, org: str, scopes: list[str]) -> str:
    svc = AccountService(db)
    if org not in {o.name for o in svc.list_organisations()}:
        svc.create_organisation(org)
    return svc.create_api_key(org, "test", scopes)[1]


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _required_scopes(route: APIRoute) -> set[str]:
    found: set[str] = set()
    stack = [route.dependant]
    while stack:
        d = stack.pop()
        if isinstance(d.call, RequireScope):
            found.update(d.call.scopes)  # any one of them is enough
        stack.extend(d.dependencies)
    return found


_GUARDED = ("/v1", "/h/", "/m/", "/c/", "/metrics")  # Bastion's own API, the HMA-compatible one (api/hma.py), ops


def _v1_routes(app) -> list[tuple[str, str, APIRoute]]:
    out = []
    for route in app.routes:
        # An included router or mount would hide its endpoints from this walk: add routes to the app directly.
        # The one mount allowed is the console's static files (public: CSS and JS, no data).
        if isinstance(route, Mount) and route.path == "/console/static":
            continue
        assert isinstance(route, Route), f"{route!r}: the route matrix cannot see inside it"
        if isinstance(route, APIRoute) and route.path.startswith(_GUARDED) and route.path not in PUBLIC_PATHS:
            for method in sorted(route.methods):
                out.append((method, route.path, route))
    return out


def test_every_route_checks_key_and_scope(db, app, client):
    routes = _v1_routes(app)
    assert len(routes) >= 5  # /me, /banks, GET/POST/DELETE /keys at least
    for method, path, route in routes:
        url = re.sub(r"\{[^}]+\}", "1", path)
        scopes = _required_scopes(route)
        assert scopes or path in ANY_KEY_PATHS, f"{method} {path} declares no scope (use require_scope)"
        r = client.request(method, url)
        assert r.status_code == 401, (method, path, r.status_code, r.text)
        assert r.json()["error"]["code"] == "unauthenticated"
        r = client.request(method, url, headers=_auth("bst_aaaaaaaa_" + "x" * 43))
        assert (r.status_code, r.json()["error"]["code"]) == (401, "invalid_api_key"), (method, path)
        if not scopes:
            continue
        others = [s for s in SCOPES if s not in scopes]
        r = client.request(method, url, headers=_auth(_key(db, "matrix", others)))
        assert r.status_code == 403, (method, path, r.status_code, r.text)
        assert r.json()["error"]["code"] == "forbidden_scope"
        r = client.request(method, url, headers=_auth(_key(db, "matrix", sorted(scopes))))
        assert r.status_code not in (401, 403), (method, path, r.status_code, r.text)


def _code(r) -> str | None:  # noqa: ANN001 - a response
    body = r.json() if r.headers.get("content-type", "").startswith("application/json") else None
    return body.get("error", {}).get("code") if isinstance(body, dict) else None


def _not_found(code: str | None) -> bool:
    """A "no such thing" code: ``not_found`` or a resource's own (``content_not_found``...)."""
    return code is not None and (code == "not_found" or code.endswith("_not_found"))


def _registered(path: str, param: str) -> tuple[str, Callable[[Database, str], str]] | None:
    for key in (f"{path}:{param}", param):
        if key in OWNED_BY_ORGANISATION:
            return "owned", OWNED_BY_ORGANISATION[key]
        if key in NOT_OWNED_PARAMS:
            return "plain", NOT_OWNED_PARAMS[key]
    return None


def test_every_route_isolates_organisations(db, app, client):
    """Organisation B (every scope) asks for organisation A's resource through every route that names one: 404
    ``not_found`` (as if it did not exist, never 403), and A's own request for it gets past the lookup."""
    key_a = _key(db, "org-a", list(SCOPES))
    key_b = _key(db, "org-b", list(SCOPES))
    unregistered, checked = [], []
    for method, path, route in _v1_routes(app):
        params = list(route.param_convertors)
        if not params or set(params) & PENDING_PARAMS:
            continue
        found = {p: _registered(path, p) for p in params}
        missing = [p for p, f in found.items() if f is None]
        if missing:
            unregistered.append(f"{method} {path}: {', '.join(missing)}")
            continue
        assert any(kind == "owned" for kind, _ in found.values()), (
            f"{method} {path}: no path parameter names an organisation-owned resource; register one in "
            "OWNED_BY_ORGANISATION"
        )
        values = {p: factory(db, "org-a") for p, (_, factory) in found.items()}
        url = re.sub(r"\{([^}:]+)(:[^}]*)?\}", lambda m, v=values: v[m.group(1)], path)
        body = {"json": ISOLATION_BODIES.get((method, path), {})} if method in ("POST", "PUT", "PATCH") else {}
        r = client.request(method, url, headers=_auth(key_b), **body)
        assert r.status_code == 404 and _not_found(_code(r)), (method, path, r.status_code, r.text)
        r = client.request(method, url, headers=_auth(key_a), **body)
        assert r.status_code not in (401, 403) and not (r.status_code == 404 and _not_found(_code(r))), (
            method,
            path,
            r.status_code,
            r.text,
        )
        checked.append(f"{method} {path}")
    assert not unregistered, (
        "routes with path parameters the organisation matrix does not know (register a factory that creates the "
        "owning organisation's resource in OWNED_BY_ORGANISATION, or the value in NOT_OWNED_PARAMS): "
        + "; ".join(unregistered)
    )
    assert {
        "DELETE /v1/keys/{key_id}",
        "GET /c/bank/{bank_name}",
        "DELETE /c/bank/{bank_name}",
        "PATCH /v1/users/{user_id}",
    } <= set(checked)


def test_health_needs_no_key(client):
    r = client.get("/v1/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"


def test_me_shows_org_and_scopes(db, client):
    key = _key(db, "acme", ["submit", "review"])
    body = client.get("/v1/me", headers=_auth(key)).json()
    assert body["organisation"]["name"] == "acme" and body["scopes"] == ["review", "submit"]


def test_revoked_and_expired_keys_are_rejected_over_http(db, client):
    from datetime import timedelta

    from sqlalchemy import update

    from bastion.storage.models import ApiKey, utcnow

    svc = AccountService(db)
    svc.create_organisation("acme")
    revoked_info, revoked = svc.create_api_key("acme", "r", ["admin"])
    expired_info, expired = svc.create_api_key("acme", "e", ["admin"], expires_in=timedelta(days=1))
    assert client.get("/v1/me", headers=_auth(revoked)).status_code == 200
    svc.revoke_key(revoked_info.id)
    with db.session() as s:
        s.execute(update(ApiKey).where(ApiKey.id == expired_info.id).values(expires_at=utcnow() - timedelta(1)))
    for key, code in ((revoked, "api_key_revoked"), (expired, "api_key_expired")):
        r = client.get("/v1/me", headers=_auth(key))
        assert (r.status_code, r.json()["error"]["code"]) == (401, code)


def test_error_shape(db, client):
    r = client.get("/v1/me", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert r.status_code == 401
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) >= {"code", "message"}
    assert body["error"]["code"] == "invalid_api_key" and body["error"]["message"]
    key = _key(db, "acme", ["admin"])
    r = client.post("/v1/keys", headers=_auth(key), json={"name": "x", "scopes": ["root"]})
    assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_scope")
    r = client.post("/v1/keys", headers=_auth(key), json={"scopes": "admin"})
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_request")
    assert r.json()["error"]["details"]["problems"]
    r = client.get("/v1/no-such-thing")
    assert r.status_code == 404 and r.json() == {"error": {"code": "not_found", "message": "Not Found"}}


def test_keys_endpoints_and_key_shown_once(db, client):
    admin = _key(db, "acme", ["admin"])
    r = client.post("/v1/keys", headers=_auth(admin), json={"name": "uploads", "scopes": ["submit"], "expires_days": 7})
    assert r.status_code == 201
    new_key, info = r.json()["api_key"], r.json()["key"]
    assert new_key.startswith(f"bst_{info['prefix']}_") and info["expires_at"]
    assert client.get("/v1/me", headers=_auth(new_key)).json()["scopes"] == ["submit"]
    listing = client.get("/v1/keys", headers=_auth(admin))
    assert listing.status_code == 200
    assert new_key.split("_", 2)[2] not in listing.text and "secret" not in listing.text
    assert {k["name"] for k in listing.json()["keys"]} == {"test", "uploads"}
    r = client.delete(f"/v1/keys/{info['id']}", headers=_auth(admin))
    assert r.status_code == 200 and r.json()["key"]["revoked_at"]
    r = client.get("/v1/me", headers=_auth(new_key))
    assert (r.status_code, r.json()["error"]["code"]) == (401, "api_key_revoked")


def test_keys_are_isolated_between_organisations(db, client):
    admin_a = _key(db, "org-a", ["admin"])
    admin_b = _key(db, "org-b", ["admin"])
    b_keys = client.get("/v1/keys", headers=_auth(admin_b)).json()["keys"]
    a_keys = client.get("/v1/keys", headers=_auth(admin_a)).json()["keys"]
    assert len(a_keys) == len(b_keys) == 1 and a_keys[0]["id"] != b_keys[0]["id"]
    assert {k["organisation_id"] for k in a_keys}.isdisjoint({k["organisation_id"] for k in b_keys})
    r = client.delete(f"/v1/keys/{b_keys[0]['id']}", headers=_auth(admin_a))
    assert (r.status_code, r.json()["error"]["code"]) == (404, "not_found")
    assert client.get("/v1/me", headers=_auth(admin_b)).status_code == 200  # still works
    created = client.post("/v1/keys", headers=_auth(admin_a), json={"name": "n", "scopes": ["submit"]}).json()
    assert created["key"]["organisation_id"] == a_keys[0]["organisation_id"]
    assert len(client.get("/v1/keys", headers=_auth(admin_b)).json()["keys"]) == 1


def test_banks_listing_needs_curate(db, client):
    curator = _key(db, "acme", ["curate"])
    BankService(db).create_bank("known", organisation_id=AccountService(db).get_organisation("acme").id)
    BankService(db).create_bank("operators-own")  # no owner: no organisation sees it
    r = client.get("/v1/banks", headers=_auth(curator))
    assert r.status_code == 200 and [b["name"] for b in r.json()["banks"]] == ["known"]
    assert r.json()["banks"][0]["access"] == "owner" and r.json()["banks"][0]["owner"] == "acme"


def test_serve_runs_uvicorn_on_the_app(db, monkeypatch):
    import uvicorn
    from typer.testing import CliRunner

    from bastion.cli.main import app as cli

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, **kw: seen.update(app=app, host=host, port=port, **kw))
    monkeypatch.setattr("bastion.logging.configure_logging", lambda fmt: seen.update(log_format=fmt))
    result = CliRunner().invoke(cli, ["serve", "--port", "8123", "--log-format", "text"])
    assert result.exit_code == 0, result.output
    assert (seen["host"], seen["port"], seen["log_format"], seen["log_config"]) == ("127.0.0.1", 8123, "text", None)
    with TestClient(seen["app"]) as c:
        assert c.get("/v1/health").status_code == 200
        assert c.get("/v1/me").status_code == 401
