"""`bastion forum`: the hub's operator commands on its own database, and a platform joining, sharing and syncing
through Typer's test runner (the hub served on loopback; the platform's database is the ``db`` fixture)."""

from __future__ import annotations

import json

from sqlalchemy import select
from typer.testing import CliRunner

from bastion.accounts.service import AccountService
from bastion.banks.service import BankService
from bastion.cli.main import app
from bastion.forum import signing
from bastion.signals.base import Signal
from bastion.storage.models import ForumContribution
from forum_helpers import LiveHub, sqlite_database

runner = CliRunner()


def run(*args: str, code: int = 0):
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, (result.exit_code, result.output)
    return result


def test_hub_operator_commands(tmp_path):
    url = f"sqlite:///{tmp_path / 'hub.sqlite3'}"
    out = run("forum", "member", "add", "alpha", "--database-url", url).stdout
    key = out.strip().splitlines()[-1].strip()
    assert key.startswith("bfm_")
    run("forum", "member", "add", "alpha", "--database-url", url, code=4)
    public = signing.public_key_text(signing.new_private_key())
    assert (
        public in run("forum", "member", "key-register", "alpha", "--public-key", public, "--database-url", url).stdout
    )
    other = signing.public_key_text(signing.new_private_key())
    assert (
        "public_key_registered"
        in run("forum", "member", "key-register", "alpha", "--public-key", other, "--database-url", url, code=4).output
    )
    assert "lead" in run("forum", "member", "role", "alpha", "lead", "--database-url", url).stdout
    listed = json.loads(run("forum", "member", "list", "--json", "--database-url", url).stdout)
    assert (listed["name"], listed["role"], listed["public_key"]) == ("alpha", "lead", public)
    assert (
        "12 h" in run("forum", "incident", "activate", "attack-1", "--window-hours", "12", "--database-url", url).stdout
    )
    run("forum", "incident", "deactivate", "attack-1", "--database-url", url)
    assert "incident_not_found" in run("forum", "incident", "deactivate", "nope", "--database-url", url, code=3).output


def test_join_share_sync_status(db, tmp_path):
    hub = LiveHub(sqlite_database(tmp_path / "hub.sqlite3"))
    try:
        org = AccountService(db).create_organisation("alpha")
        banks = BankService(db, organisation_id=org.id)
        banks.create_bank("alpha-known")
        banks.add_entry("alpha-known", [Signal("md5", "b" * 32)], {"category": "propaganda"})
        key = hub.add("alpha")
        assert "invalid_api_key" in run("forum", "join", hub.url, "--key", "bfm_nope", "--org", "alpha", code=5).output
        assert "forum-alpha" in run("forum", "join", hub.url, "--key", key, "--org", "alpha").stdout
        assert "(all)" in run("forum", "share", "alpha-known", "--org", "alpha", "--all").stdout
        report = json.loads(run("forum", "sync", "--org", "alpha", "--no-rescan").stdout)
        assert (report["pushed"], report["stored"], report["error"]) == (1, 0, None)  # pull first, then push
        report = json.loads(run("forum", "sync", "--org", "alpha", "--no-rescan").stdout)
        assert (report["pushed"], report["stored"]) == (0, 1)  # its own contribution, back through the feed
        with hub.db.session() as s:
            assert s.scalar(select(ForumContribution.value)) == "b" * 32
        status = json.loads(run("forum", "status", "--org", "alpha", "--json").stdout)
        assert status["member"] == "alpha" and status["cursor"] == report["cursor"]
        run("forum", "share", "alpha-known", "--org", "alpha", "--stop")
        assert "not_shared" in run("forum", "share", "alpha-known", "--org", "alpha", "--stop", code=3).output
    finally:
        hub.stop()
