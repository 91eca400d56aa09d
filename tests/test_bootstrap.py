"""First start: an admin key printed once on an empty database; ``serve --demo`` seeds demo data idempotently."""

import re

import pytest
import uvicorn
from typer.testing import CliRunner

from bastion.accounts.bootstrap import DEMO_ORGANISATION, DEMO_SCOPES, ensure_admin
from bastion.accounts.service import SCOPES, AccountService
from bastion.banks.service import BankService
from bastion.cli.main import app as cli
from bastion.demo import DEMO_BANK
from bastion.errors import Unauthenticated
from bastion.settings import reset_settings_cache

KEY_RE = re.compile(r"bst_[A-Za-z0-9]{8}_[A-Za-z0-9_-]+")


def _serve(monkeypatch, *args: str):
    runs = []
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, **kw: runs.append(app))
    monkeypatch.setattr("bastion.logging.configure_logging", lambda fmt: None)
    result = CliRunner().invoke(cli, ["serve", *args])
    assert result.exit_code == 0, result.output
    assert len(runs) == 1
    return result


def test_ensure_admin_creates_once_with_every_scope(db):
    secret = ensure_admin(db)
    assert secret is not None
    principal = AccountService(db).authenticate(secret)
    assert principal.organisation_name == "admin"
    assert principal.scopes == frozenset(SCOPES)
    assert ensure_admin(db) is None
    orgs = AccountService(db).list_organisations()
    assert [o.name for o in orgs] == ["admin"]
    assert len(AccountService(db).list_keys("admin")) == 1


def test_ensure_admin_does_nothing_when_an_organisation_exists(db):
    AccountService(db).create_organisation("acme")
    assert ensure_admin(db) is None
    assert [o.name for o in AccountService(db).list_organisations()] == ["acme"]


def test_admin_organisation_name_is_a_setting(db, monkeypatch):
    monkeypatch.setenv("BASTION_ADMIN_ORGANISATION", "root-ops")
    reset_settings_cache()
    secret = ensure_admin(db)
    assert AccountService(db).authenticate(secret).organisation_name == "root-ops"


def test_serve_prints_the_secret_on_first_start_only(db, monkeypatch):
    first = _serve(monkeypatch)
    printed = KEY_RE.findall(first.stderr)
    assert len(printed) == 1 and "shown once" in first.stderr and "store it now" in first.stderr
    assert printed[0] not in first.stdout
    assert AccountService(db).authenticate(printed[0]).scopes == frozenset(SCOPES)
    second = _serve(monkeypatch)
    assert not KEY_RE.findall(second.output) and "shown once" not in second.output
    assert len(AccountService(db).list_keys("admin")) == 1


def test_serve_demo_seeds_org_key_and_bank_once(db, monkeypatch):
    first = _serve(monkeypatch, "--demo")
    printed = KEY_RE.findall(first.stderr)
    assert len(printed) == 2  # admin, then demo
    scopes = {AccountService(db).authenticate(k).organisation_name: k for k in printed}
    demo = AccountService(db).authenticate(scopes[DEMO_ORGANISATION])
    assert demo.scopes == frozenset(DEMO_SCOPES) and "admin" not in demo.scopes
    assert BankService(db).get_bank(DEMO_BANK).entries == 6

    second = _serve(monkeypatch, "--demo")
    assert not KEY_RE.findall(second.output)
    assert BankService(db).get_bank(DEMO_BANK).entries == 6
    assert sorted(o.name for o in AccountService(db).list_organisations()) == ["admin", DEMO_ORGANISATION]
    assert len(AccountService(db).list_keys(DEMO_ORGANISATION)) == 1
    for key in printed:  # keys printed on the first start still work; nothing was rotated
        AccountService(db).authenticate(key)


def test_serve_without_demo_seeds_no_demo_data(db, monkeypatch):
    _serve(monkeypatch)
    assert [o.name for o in AccountService(db).list_organisations()] == ["admin"]
    assert [b.name for b in BankService(db).list_banks()] == []


def test_a_wrong_secret_still_fails_after_bootstrap(db):
    ensure_admin(db)
    with pytest.raises(Unauthenticated):
        AccountService(db).authenticate("bst_aaaaaaaa_" + "x" * 40)


def test_serve_creates_an_admin_user_with_a_one_time_password(db, monkeypatch):
    from bastion.accounts.bootstrap import ensure_admin_user
    from bastion.accounts.sessions import SessionService
    from bastion.settings import get_settings

    first = _serve(monkeypatch, "--port", "8123")
    assert "http://127.0.0.1:8123/console/" in first.stderr and "admin@bastion.localhost" in first.stderr
    password = re.search(r"one-time password:\n\s+(\S+)", first.stderr).group(1)
    assert password not in first.stdout
    users = AccountService(db).list_users("admin")
    assert [(u.email, u.role) for u in users] == [("admin@bastion.localhost", "admin")]
    signed_in = SessionService(db, get_settings()).sign_in("admin@bastion.localhost", password)
    assert signed_in.user.organisation_name == "admin" and signed_in.user.role == "admin"
    second = _serve(monkeypatch)
    assert "one-time password" not in second.output and password not in second.output
    assert ensure_admin_user(db) is None and len(AccountService(db).list_users("admin")) == 1


def test_admin_email_is_a_setting(db, monkeypatch):
    from bastion.accounts.bootstrap import ensure_admin_user

    monkeypatch.setenv("BASTION_ADMIN_EMAIL", "ops@platform.example")
    reset_settings_cache()
    assert ensure_admin_user(db) is None  # no admin organisation yet
    ensure_admin(db)
    email, password = ensure_admin_user(db)
    assert email == "ops@platform.example" and len(password) >= 12
