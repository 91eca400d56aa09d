"""Organisations and API keys: shown once, stored hashed, revocable, expiring, scoped (service and CLI)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select, text, update
from typer.testing import CliRunner

from bastion.accounts.service import AccountService, hash_secret
from bastion.cli.main import app
from bastion.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from bastion.storage.models import ApiKey, utcnow

runner = CliRunner()


def test_key_is_shown_once_and_stored_only_hashed(db):
    svc = AccountService(db)
    svc.create_organisation("acme")
    info, plaintext = svc.create_api_key("acme", "uploads", ["submit"])
    prefix, secret = plaintext.split("_")[1], plaintext.split("_", 2)[2]
    assert plaintext == f"bst_{info.prefix}_{secret}" and prefix == info.prefix and len(secret) >= 40
    with db.engine.connect() as conn:
        row = conn.execute(text("SELECT * FROM api_keys")).mappings().one()
    stored = " ".join(str(v) for v in row.values())
    assert plaintext not in stored and secret not in stored
    assert row["secret_hash"] == hash_secret(secret)
    listed = svc.list_keys("acme")
    assert [k.id for k in listed] == [info.id]
    assert "secret_hash" not in listed[0].to_dict() and secret not in json.dumps(listed[0].to_dict())
    principal = svc.authenticate(plaintext)
    assert (principal.organisation_name, principal.key_id, principal.scopes) == ("acme", info.id, {"submit"})
    assert svc.list_keys("acme")[0].last_used_at is not None


def test_two_keys_differ(db):
    svc = AccountService(db)
    svc.create_organisation("acme")
    _, a = svc.create_api_key("acme", "a", ["submit"])
    _, b = svc.create_api_key("acme", "b", ["submit"])
    assert a != b and a.split("_")[1] != b.split("_")[1]


@pytest.mark.parametrize(
    "bad",
    ["", "nope", "bst_short_x", "Bearer bst_abcdefgh_" + "x" * 43],
)
def test_malformed_keys_are_invalid(db, bad):
    with pytest.raises(Unauthenticated) as exc:
        AccountService(db).authenticate(bad)
    assert exc.value.code == "invalid_api_key" and exc.value.http_status == 401


def test_wrong_secret_or_unknown_prefix_is_invalid(db):
    svc = AccountService(db)
    svc.create_organisation("acme")
    info, plaintext = svc.create_api_key("acme", "k", ["admin"])
    tampered = plaintext[:-1] + ("A" if plaintext[-1] != "A" else "B")
    unknown_prefix = "bst_zzzzzzzz_" + plaintext.split("_", 2)[2]
    for bad in (tampered, unknown_prefix):
        with pytest.raises(Unauthenticated) as exc:
            svc.authenticate(bad)
        assert exc.value.code == "invalid_api_key"


def test_revoked_key_is_rejected(db):
    svc = AccountService(db)
    svc.create_organisation("acme")
    info, plaintext = svc.create_api_key("acme", "k", ["admin"])
    svc.authenticate(plaintext)
    revoked = svc.revoke_key(info.id)
    assert revoked.revoked_at is not None
    assert svc.revoke_key(info.id).revoked_at == revoked.revoked_at  # idempotent
    with pytest.raises(Unauthenticated) as exc:
        svc.authenticate(plaintext)
    assert exc.value.code == "api_key_revoked"


def test_expired_key_is_rejected(db):
    svc = AccountService(db)
    svc.create_organisation("acme")
    info, plaintext = svc.create_api_key("acme", "k", ["admin"], expires_in=timedelta(days=1))
    assert info.expires_at is not None and info.expires_at > utcnow()
    svc.authenticate(plaintext)  # valid until then
    with db.session() as s:
        s.execute(update(ApiKey).where(ApiKey.id == info.id).values(expires_at=utcnow() - timedelta(seconds=1)))
    with pytest.raises(Unauthenticated) as exc:
        svc.authenticate(plaintext)
    assert exc.value.code == "api_key_expired"


def test_bad_requests_are_refused_with_codes(db):
    svc = AccountService(db)
    svc.create_organisation("acme")
    with pytest.raises(Conflict):
        svc.create_organisation("acme")
    with pytest.raises(InvalidInput) as exc:
        svc.create_organisation("../bad")
    assert exc.value.code == "invalid_name"
    for scopes in ([], ["root"]):
        with pytest.raises(InvalidInput) as exc:
            svc.create_api_key("acme", "k", scopes)
        assert exc.value.code == "invalid_scope"
    with pytest.raises(InvalidInput):
        svc.create_api_key("acme", "k", ["admin"], expires_in=timedelta(0))
    with pytest.raises(NotFound):
        svc.create_api_key("nobody", "k", ["admin"])
    with pytest.raises(NotFound):
        svc.revoke_key(12345)
    with db.session() as s:
        assert s.scalars(select(ApiKey)).all() == []  # nothing half-written


def test_revoke_scoped_to_organisation(db):
    svc = AccountService(db)
    a, b = svc.create_organisation("a"), svc.create_organisation("b")
    kb, _ = svc.create_api_key("b", "k", ["admin"])
    with pytest.raises(NotFound):
        svc.revoke_key(kb.id, organisation_id=a.id)
    assert svc.list_keys(b.id)[0].revoked_at is None


def _cli(*args: str, code: int = 0):
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    return result


def test_cli_org_and_keys(db):
    assert "created organisation acme" in _cli("org", "create", "acme").stdout
    assert "error[conflict]" in _cli("org", "create", "acme", code=4).stderr
    created = _cli(
        "key", "create", "acme", "--name", "ci", "--scope", "submit", "--scope", "review", "--expires-days", "30"
    )
    plaintext = created.stdout.strip()
    assert plaintext.startswith("bst_") and "cannot be shown again" in created.stderr
    principal = AccountService(db).authenticate(plaintext)
    assert principal.scopes == {"submit", "review"}
    listed = [json.loads(line) for line in _cli("key", "list", "acme", "--json").stdout.splitlines()]
    assert [(k["name"], k["scopes"]) for k in listed] == [("ci", ["submit", "review"])]
    assert listed[0]["expires_at"] is not None
    assert plaintext.split("_", 2)[2] not in _cli("key", "list", "acme").stdout
    _cli("key", "revoke", str(listed[0]["id"]))
    assert "revoked" in _cli("key", "list", "acme").stdout
    assert "error[invalid_scope]" in _cli("key", "create", "acme", "--name", "x", "--scope", "root", code=2).stderr
    assert "error[not_found]" in _cli("key", "list", "nobody", code=3).stderr
