"""`bastion report` and `bastion preservation` through Typer's test runner (SQLite and PostgreSQL): the transparency
report in its three formats and published, statements exported as validated batch files of at most 100, a batch file
checked, preserved content listed, read, extended and purged; bad input gets its code."""

from __future__ import annotations

import json
from datetime import timedelta

from typer.testing import CliRunner

from bastion.accounts.service import AccountService
from bastion.cli.report import app, preservation_app
from bastion.storage.models import AuditRecord, ContentBlob, ContentItem, Decision, TransparencyReport, utcnow

runner = CliRunner()


def run(*args: str, code: int = 0, cli=app):
    result = runner.invoke(cli, list(args))
    assert result.exit_code == code, (result.exit_code, result.output)
    return result


def _removals(db, org_id: int, n: int) -> None:
    with db.session() as s:
        for i in range(n):
            item = ContentItem(
                organisation_id=org_id,
                external_id=f"p{i}",
                source="upload",
                content_type="video",
                status="decided",
                signals=[],
                jurisdictions=["IE"],
            )
            s.add(item)
            s.flush()
            s.add(ContentBlob(content_id=item.id, data=b"benign bytes %d" % i))
            s.add(
                Decision(
                    content_id=item.id,
                    organisation_id=org_id,
                    version=1,
                    outcome="remove",
                    automated=True,
                    reason="known",
                    evidence={"matches": [{"bank": "known", "entry_id": i}]},
                )
            )


def test_transparency_report_formats_and_publishing(db, tmp_path):
    org_id = AccountService(db).create_organisation("alpha").id
    _removals(db, org_id, 3)
    today = utcnow().date()
    period = ["--from", str(today - timedelta(days=1)), "--to", str(today + timedelta(days=1))]
    doc = json.loads(run("transparency", "alpha", *period).stdout)
    assert doc["tco_article_7"]["items_removed"] == 3 and doc["charts"]["proactive_share"]["share"] == 1.0
    assert run("transparency", "alpha", *period, "--format", "csv").stdout.startswith("section,field,category")
    html = tmp_path / "report.html"
    run("transparency", "alpha", *period, "--format", "html", "--out", str(html))
    assert "<svg" in html.read_text() and "<script" not in html.read_text()
    published = run("transparency", "alpha", *period, "--publish")
    assert "published version 1" in published.stderr
    assert "published version 2" in run("transparency", "alpha", *period, "--publish").stderr
    with db.session() as s:
        assert s.query(TransparencyReport).count() == 2
    assert "invalid_format" in run("transparency", "alpha", *period, "--format", "pdf", code=2).output
    assert "invalid_period" in run("transparency", "alpha", "--from", "yesterday", "--to", "2025-01-01", code=2).output
    assert "invalid_period" in run("transparency", "alpha", "--from", "2025-02-01", "--to", "2025-01-01", code=2).output


def test_statements_are_exported_in_batches_of_100_and_validated(db, tmp_path):
    org_id = AccountService(db).create_organisation("alpha").id
    _removals(db, org_id, 205)
    out = tmp_path / "sor"
    assert "205 statement(s) in 3 batch file(s)" in run("statements", "alpha", "--out", str(out)).stdout
    files = sorted(out.iterdir())
    sizes = [len(json.loads(f.read_text())["statements"]) for f in files]
    assert [f.name for f in files] == ["statements-0001.json", "statements-0002.json", "statements-0003.json"]
    assert sizes == [100, 100, 5]
    assert "valid: 100 statement(s)" in run("validate", str(files[0])).stdout
    body = json.loads(files[2].read_text())
    body["statements"][1]["territorial_scope"] = ["US"]
    body["statements"][3].pop("decision_facts")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(body))
    result = run("validate", str(bad), code=2)
    assert "statement_1.territorial_scope" in result.output and "statement_3.decision_facts" in result.output
    assert "invalid_statements" in result.output
    (tmp_path / "nojson.json").write_text("{")
    assert "invalid_json" in run("validate", str(tmp_path / "nojson.json"), code=2).output


def test_preservation_commands(db):
    org_id = AccountService(db).create_organisation("alpha").id
    _removals(db, org_id, 1)
    from bastion.compliance.sweep import sweep
    from bastion.settings import get_settings

    sweep(db, get_settings())
    rows = [json.loads(line) for line in run("list", cli=preservation_app).stdout.splitlines()]
    assert len(rows) == 1 and rows[0]["has_bytes"] is True
    pid = str(rows[0]["id"])
    package = json.loads(run("read", pid, "--purpose", "Garda request 7", cli=preservation_app).stdout)
    assert package["package"]["content"]["external_id"] == "p0"
    assert "purpose_required" in run("read", pid, "--purpose", "", cli=preservation_app, code=2).output
    later = (utcnow() + timedelta(days=400)).isoformat()
    extended = json.loads(
        run(
            "extend",
            pid,
            "--until",
            later,
            "--requested-by",
            "High Court",
            "--reference",
            "2025/123",
            cli=preservation_app,
        ).stdout
    )
    assert extended["extensions"][0]["reference"] == "2025/123"
    assert run("purge", cli=preservation_app).stdout.strip() == "purged 0"
    with db.session() as s:
        actions = [a for (a,) in s.query(AuditRecord.action).filter(AuditRecord.action.like("preservation_%"))]
    assert actions == ["preservation_read", "preservation_extended"]
