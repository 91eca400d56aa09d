"""`bastion demo`, the README's first command: the demo is seeded as `serve --demo` seeds it, the real HTTP service
decides every upload (each altered copy removed by the demo policy, nothing unrelated), stops, and reruns work."""

import re
import threading

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from bastion.accounts.service import AccountService
from bastion.cli.main import app
from bastion.demo import DEMO_BANK, prepare_uploads
from bastion.errors import Unauthenticated
from bastion.storage.db import open_database
from bastion.storage.models import ContentItem, Decision, Organisation

_KEY = re.compile(r'Authorization: Bearer (bst_[A-Za-z0-9_-]+)" -F content_id=my-1 -F file=@(\S+) ')


def _printed_key(output: str) -> str:
    m = _KEY.search(output)
    assert m, output
    return m.group(1)


def test_demo_serves_and_removes_every_altered_copy_and_nothing_else(settings, tmp_path):
    n_uploads = len(prepare_uploads(tmp_path / "count"))
    runner = CliRunner()
    keys = []
    for run in (1, 2, 3):  # later runs reuse the seeded organisation, bank and policy, with a fresh key
        result = runner.invoke(app, ["demo"])
        assert result.exit_code == 0, result.output
        assert "36 of 36 altered copies removed; 0 of 5 unrelated files removed." in result.stdout
        assert re.search(r"Service running at http://127\.0\.0\.1:\d+ ", result.stdout)
        assert "./dev bastion serve --demo" in result.stdout
        assert _KEY.search(result.stdout).group(2).endswith(".jpg")
        keys.append(_printed_key(result.stdout))
        assert not [t for t in threading.enumerate() if t.name == "bastion-demo-server"]  # the server stopped

        db = open_database(settings)
        with db.session() as s:
            demo_org = s.scalar(select(Organisation.id).where(Organisation.name == "demo"))
            assert s.scalar(select(func.count()).select_from(ContentItem)) == run * n_uploads
            items = s.scalars(select(ContentItem)).all()
            assert {i.organisation_id for i in items} == {demo_org}  # submitted with the demo key
            assert all(i.status == "decided" for i in items)
            decisions = s.scalars(select(Decision)).all()
            assert len(decisions) == run * n_uploads
            assert all(d.policy_version == 1 and d.actor == "policy" for d in decisions)
            removed = [d for d in decisions if d.outcome == "remove"]
            assert len(removed) == run * 36
            assert {d.rule for d in removed} == {"remove-demo-bank-match"}
            assert all(m["bank"] == DEMO_BANK for d in removed for m in d.evidence["matches"])
        db.engine.dispose()

    db = open_database(settings)
    accounts = AccountService(db)
    first, second, third = keys
    assert accounts.authenticate(first).organisation_name == "demo"  # the organisation's own key: never revoked
    with pytest.raises(Unauthenticated) as revoked:  # demo-run-1, revoked when demo-run-2 was made
        accounts.authenticate(second)
    assert revoked.value.code == "api_key_revoked"
    assert accounts.authenticate(third).organisation_name == "demo"  # the key printed last works
    names = {k.name: k for k in accounts.list_keys("demo")}
    assert set(names) == {"demo", "demo-run-1", "demo-run-2"} and names["demo-run-2"].revoked_at is None
    assert "admin" in {o.name for o in accounts.list_organisations()}  # as `bastion serve` would have created
    db.engine.dispose()


def test_scan_demo_matches_every_altered_copy_and_nothing_else(settings):
    runner = CliRunner()
    for _ in range(2):  # a second run replaces the demo bank instead of failing
        result = runner.invoke(app, ["demo", "--scan"])
        assert result.exit_code == 0, result.output
        assert "36 of 36 altered copies matched; 0 of 5 unrelated files matched." in result.stdout
    assert (settings.data_dir / "bastion.sqlite3").exists()
    assert (settings.data_dir / "index").exists()
