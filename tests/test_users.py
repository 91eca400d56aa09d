"""Users: identities in an organisation with a role (service, CLI and /v1/users), audited, isolated per organisation."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from bastion import audit
from bastion.accounts.service import ROLES, AccountService
from bastion.api.app import create_app
from bastion.cli.main import app as cli
from bastion.errors import Conflict, InvalidInput, NotFound
from bastion.storage.models import User

runner = CliRunner()


def _records(db, action: str) -> list[dict]:
    return [r for r in audit.list_records(db, limit=None) if r["action"] == action]


def test_roles():
    assert ROLES == ("reviewer", "lead", "admin", "authority")  # authority: issue 6 (orders)


def test_create_list_get_role_delete_audited(db):
    svc = AccountService(db, actor="tester")
    org = svc.create_organisation("acme")
    alice = svc.create_user("acme", "  Alice.Smith@Example.COM ", "admin")
    bob = svc.create_user(org.id, "bob@example.org")
    assert (alice.email, alice.role, alice.organisation_id) == ("Alice.Smith@example.com", "admin", org.id)
    assert bob.role == "reviewer" and bob.created_at.tzinfo is not None
    assert [(u.id, u.email) for u in svc.list_users("acme")] == [(alice.id, alice.email), (bob.id, bob.email)]
    assert svc.get_user("acme", bob.id) == bob
    assert json.loads(json.dumps(bob.to_dict()))["email"] == "bob@example.org"

    assert svc.set_role("acme", bob.id, "lead").role == "lead"
    assert svc.get_user("acme", bob.id).role == "lead"
    svc.set_role("acme", bob.id, "lead")  # unchanged: no second record
    deleted = svc.delete_user("acme", bob.id)
    assert deleted.email == "bob@example.org"
    with pytest.raises(NotFound) as err:
        svc.get_user("acme", bob.id)
    assert err.value.code == "user_not_found"
    assert [u.id for u in svc.list_users("acme")] == [alice.id]

    created = _records(db, "user_created")
    assert [(r["target"], r["details"], r["actor"], r["organisation_id"]) for r in created] == [
        (f"user:{alice.id}", {"email": alice.email, "role": "admin"}, "tester", org.id),
        (f"user:{bob.id}", {"email": "bob@example.org", "role": "reviewer"}, "tester", org.id),
    ]
    changed = _records(db, "user_role_changed")
    assert [(r["target"], r["details"]) for r in changed] == [
        (f"user:{bob.id}", {"email": "bob@example.org", "from": "reviewer", "to": "lead"})
    ]
    assert [(r["target"], r["details"]) for r in _records(db, "user_deleted")] == [
        (f"user:{bob.id}", {"email": "bob@example.org", "role": "lead"})
    ]
    assert audit.verify(db).ok


@pytest.mark.parametrize(
    "email",
    [
        "",
        "   ",
        "no-at-sign",
        "a@b",
        "@example.com",
        "a@",
        "a..b@example.com",
        ".a@example.com",
        "a@-example.com",
        "a@example-.com",
        "a@exa_mple.com",
        "a b@example.com",
        "a@example.com\nb@example.com",
        "a@example..com",
        "x" * 65 + "@example.com",
        "a@" + ("b" * 60 + ".") * 6 + "com",  # over 320 characters
    ],
)
def test_bad_emails_are_refused(db, email):
    svc = AccountService(db)
    svc.create_organisation("acme")
    with pytest.raises(InvalidInput) as err:
        svc.create_user("acme", email)
    assert err.value.code == "invalid_email"
    assert svc.list_users("acme") == [] and _records(db, "user_created") == []


@pytest.mark.parametrize("email", ["a@example.com", "first.last+tag@sub.example.co.uk", "o'neil@xn--bcher-kva.example"])
def test_good_emails_are_accepted(db, email):
    svc = AccountService(db)
    svc.create_organisation("acme")
    assert svc.create_user("acme", email).email == email


def test_bad_role_and_duplicates_are_refused(db):
    svc = AccountService(db)
    svc.create_organisation("acme")
    svc.create_organisation("other")
    for role in ("root", "Admin", "", "curate"):
        with pytest.raises(InvalidInput) as err:
            svc.create_user("acme", "a@example.com", role)
        assert err.value.code == "invalid_role"
    user = svc.create_user("acme", "a@example.com", "admin")
    for dup in ("a@example.com", " A@EXAMPLE.com "):  # same address, ignoring case
        with pytest.raises(Conflict) as err:
            svc.create_user("acme", dup)
        assert err.value.code == "user_exists"
    assert svc.create_user("other", "a@example.com").organisation_id != user.organisation_id  # per organisation
    with pytest.raises(InvalidInput) as err:
        svc.set_role("acme", user.id, "owner")
    assert err.value.code == "invalid_role"
    with pytest.raises(NotFound):
        svc.create_user("nobody", "b@example.com")
    with db.session() as s:
        assert s.scalar(select(func.count(User.id))) == 2


def test_users_of_another_organisation_are_not_found(db):
    svc = AccountService(db)
    svc.create_organisation("acme")
    svc.create_organisation("other")
    theirs = svc.create_user("other", "t@example.com", "lead")
    for call in (
        lambda: svc.get_user("acme", theirs.id),
        lambda: svc.set_role("acme", theirs.id, "admin"),
        lambda: svc.delete_user("acme", theirs.id),
        lambda: svc.get_user("acme", 10**30),
        lambda: svc.get_user("acme", -1),
    ):
        with pytest.raises(NotFound) as err:
            call()
        assert err.value.code == "user_not_found"
    assert svc.get_user("other", theirs.id).role == "lead"


def test_last_admin_is_kept(db):
    svc = AccountService(db)
    svc.create_organisation("acme")
    first = svc.create_user("acme", "first@example.com", "admin")
    for call in (lambda: svc.set_role("acme", first.id, "reviewer"), lambda: svc.delete_user("acme", first.id)):
        with pytest.raises(Conflict) as err:
            call()
        assert err.value.code == "last_admin"
    assert svc.get_user("acme", first.id).role == "admin"
    second = svc.create_user("acme", "second@example.com", "reviewer")
    svc.set_role("acme", second.id, "admin")
    assert svc.set_role("acme", first.id, "lead").role == "lead"  # another admin remains
    with pytest.raises(Conflict):
        svc.delete_user("acme", second.id)
    svc.delete_user("acme", first.id)
    assert [(u.email, u.role) for u in svc.list_users("acme")] == [("second@example.com", "admin")]


def _cli(*args: str, code: int = 0):
    result = runner.invoke(cli, list(args))
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    return result


def test_cli_users(db):
    _cli("org", "create", "acme")
    assert "created user" in _cli("user", "create", "acme", "Ann@Example.com", "--role", "admin").stdout
    _cli("user", "create", "acme", "rev@example.com")
    listed = [json.loads(line) for line in _cli("user", "list", "acme", "--json").stdout.splitlines()]
    assert [(u["email"], u["role"]) for u in listed] == [("Ann@example.com", "admin"), ("rev@example.com", "reviewer")]
    rev = listed[1]["id"]
    assert "is now lead" in _cli("user", "role", "acme", str(rev), "lead").stdout
    assert f"{rev}\trev@example.com\tlead" in _cli("user", "list", "acme").stdout
    assert "error[invalid_role]" in _cli("user", "role", "acme", str(rev), "root", code=2).stderr
    assert "error[invalid_email]" in _cli("user", "create", "acme", "nope", code=2).stderr
    assert "error[user_exists]" in _cli("user", "create", "acme", "rev@EXAMPLE.com", code=4).stderr
    assert "error[last_admin]" in _cli("user", "delete", "acme", str(listed[0]["id"]), code=4).stderr
    assert "deleted user" in _cli("user", "delete", "acme", str(rev)).stdout
    assert "error[user_not_found]" in _cli("user", "delete", "acme", str(rev), code=3).stderr
    assert "error[not_found]" in _cli("user", "list", "nobody", code=3).stderr
    assert [u.email for u in AccountService(db).list_users("acme")] == ["Ann@example.com"]


@pytest.fixture
def client(db, settings):
    with TestClient(create_app(db, settings)) as c:
        yield c


def _admin(db, org: str) -> dict[str, str]:
    svc = AccountService(db)
    svc.create_organisation(org)
    return {"Authorization": f"Bearer {svc.create_api_key(org, 'admin', ['admin'])[1]}"}


def test_users_api(db, client):
    acme = _admin(db, "acme")
    r = client.post("/v1/users", headers=acme, json={"email": "Lead@Example.com", "role": "lead"})
    assert r.status_code == 201, r.text
    user = r.json()["user"]
    assert (user["email"], user["role"]) == ("Lead@example.com", "lead")
    assert client.post("/v1/users", headers=acme, json={"email": "r@example.com"}).json()["user"]["role"] == "reviewer"
    listed = client.get("/v1/users", headers=acme).json()["users"]
    assert [u["email"] for u in listed] == ["Lead@example.com", "r@example.com"]
    assert client.get(f"/v1/users/{user['id']}", headers=acme).json()["user"] == user
    r = client.patch(f"/v1/users/{user['id']}", headers=acme, json={"role": "admin"})
    assert r.status_code == 200 and r.json()["user"]["role"] == "admin"

    for body, status, code in (
        ({"email": "bad", "role": "reviewer"}, 400, "invalid_email"),
        ({"email": "x@example.com", "role": "root"}, 400, "invalid_role"),
        ({"email": "lead@example.com"}, 409, "user_exists"),
        ({"role": "lead"}, 422, "invalid_request"),
    ):
        r = client.post("/v1/users", headers=acme, json=body)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), body
    r = client.patch(f"/v1/users/{user['id']}", headers=acme, json={"role": "reviewer"})
    assert (r.status_code, r.json()["error"]["code"]) == (409, "last_admin")
    r = client.delete(f"/v1/users/{user['id']}", headers=acme)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "last_admin")
    r = client.delete(f"/v1/users/{listed[1]['id']}", headers=acme)
    assert r.status_code == 200 and r.json()["user"]["email"] == "r@example.com"
    r = client.get(f"/v1/users/{listed[1]['id']}", headers=acme)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "user_not_found")
    assert [r["actor"].startswith("api-key:") for r in _records(db, "user_created")] == [True, True]
    assert audit.verify(db).ok


def test_users_api_isolates_organisations(db, client):
    acme, other = _admin(db, "acme"), _admin(db, "other")
    theirs = client.post("/v1/users", headers=other, json={"email": "t@example.com", "role": "admin"}).json()["user"]
    assert client.get("/v1/users", headers=acme).json()["users"] == []
    for method, body in (("GET", None), ("PATCH", {"role": "reviewer"}), ("DELETE", None)):
        r = client.request(method, f"/v1/users/{theirs['id']}", headers=acme, json=body)
        assert (r.status_code, r.json()["error"]["code"]) == (404, "user_not_found"), method
    assert client.get(f"/v1/users/{theirs['id']}", headers=other).json()["user"] == theirs
    # the same address may exist in both organisations, each only in its own listing
    mine = client.post("/v1/users", headers=acme, json={"email": "t@example.com"}).json()["user"]
    assert mine["id"] != theirs["id"] and mine["organisation_id"] != theirs["organisation_id"]
    assert [u["id"] for u in client.get("/v1/users", headers=other).json()["users"]] == [theirs["id"]]


def test_users_api_needs_admin_scope(db, client):
    svc = AccountService(db)
    svc.create_organisation("acme")
    review = {"Authorization": f"Bearer {svc.create_api_key('acme', 'r', ['review', 'curate', 'policy'])[1]}"}
    r = client.get("/v1/users", headers=review)
    assert (r.status_code, r.json()["error"]["code"]) == (403, "forbidden_scope")
    r = client.post("/v1/users", headers=review, json={"email": "a@example.com"})
    assert r.status_code == 403 and svc.list_users("acme") == []
