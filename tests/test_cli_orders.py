"""`bastion orders`: authorities, acceptance, signing keys, a signed file imported, the mode, the list and the sweep,
through Typer's test runner (SQLite and PostgreSQL)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from bastion.accounts.service import AccountService
from bastion.cli.orders import app
from bastion.storage.models import ContentItem, Order

runner = CliRunner()


def run(*args: str, code: int = 0):
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, (result.exit_code, result.output)
    return result


def test_an_authority_signs_a_file_and_the_platform_imports_it(db, tmp_path):
    org_id = AccountService(db).create_organisation("acme").id
    with db.session() as s:
        s.add(ContentItem(organisation_id=org_id, external_id="post-1", source="text", signals=[]))
    created = json.loads(run("authority-create", "CTIRU", "--kind", "referral_unit", "--member-state", "GB").stdout)
    assert created["kind"] == "referral_unit" and created["has_public_key"] is False
    assert (
        "invalid_authority_kind"
        in run("authority-create", "X", "--kind", "police", "--member-state", "GB", code=2).output
    )
    run("accept", "CTIRU", "acme")
    keys = json.loads(run("keygen", "--authority", "CTIRU").stdout)
    assert json.loads(run("authorities").stdout)["platforms"] == ["acme"]
    order = {
        "platform": "acme",
        "kind": "referral",
        "reference": "CTIRU-1",
        "issuer": "CTIRU",
        "member_state": "GB",
        "legal_basis": "Terms of service",
        "reasons": "Propaganda",
        "issued_at": "2026-11-26T01:00:00Z",
        "content": [{"content_id": "post-1"}],
    }
    (tmp_path / "order.json").write_text(json.dumps(order))
    signed = run("sign", str(tmp_path / "order.json"), "--authority", "CTIRU", "--private-key", keys["private_key"])
    (tmp_path / "signed.json").write_text(signed.stdout)
    got = json.loads(run("import", str(tmp_path / "signed.json")).stdout)
    assert got["status"] == "pending_review" and got["deadline_at"] is None
    assert "duplicate_order" in run("import", str(tmp_path / "signed.json"), code=4).output
    listed = [json.loads(line) for line in run("list", "acme").stdout.splitlines()]
    assert [o["reference"] for o in listed] == ["CTIRU-1"]
    assert run("mode", "acme", "review").stdout.strip() == "review"
    assert "invalid_order_mode" in run("mode", "acme", "sometimes", code=2).output
    assert json.loads(run("sweep").stdout)["alerts"] == 0
    run("accept", "CTIRU", "acme", "--revoke")
    with db.session() as s:
        assert s.query(Order).count() == 1
