"""``bastion policy``: validate, set, show, history, backtest, default, through Typer's runner (SQLite, PostgreSQL)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from bastion import audit
from bastion.accounts.service import AccountService
from bastion.cli.main import app
from bastion.policy import Evidence
from bastion.policy.engine import default_source
from bastion.storage.models import ContentItem, Decision

runner = CliRunner()
V1 = "rules:\n  - name: remove-matches\n    when: {any_match: {}}\n    outcome: remove\n"
V2 = "rules:\n  - name: review-matches\n    when: {any_match: {}}\n    outcome: review\n"
BAD = "rules:\n  - name: a\n    outcome: delete\n    colour: red\n"


def run(*args: str, code: int = 0, stdin: str | None = None):
    result = runner.invoke(app, ["policy", *args], input=stdin)
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    return result


def test_validate(tmp_path):
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(V1)
    bad.write_text(BAD)
    assert "valid: 1 rule(s), 0 shadow rule(s), default allow" in run("validate", str(good)).stdout
    out = run("validate", str(bad), code=2)
    assert "error[invalid_policy]" in out.stderr
    assert f"{bad}:3: rules[0].outcome (rule 'a'): unknown outcome 'delete'" in out.stderr
    assert f"{bad}:4: rules[0].colour (rule 'a'): unknown key 'colour'" in out.stderr
    as_json = json.loads(run("validate", str(bad), "--json", code=2).stdout)
    assert as_json["valid"] is False and [p["line"] for p in as_json["problems"]] == [3, 4]
    assert json.loads(run("validate", "-", "--json", stdin=V1).stdout)["rule_names"] == ["remove-matches"]
    missing = run("validate", str(tmp_path / "nope.yaml"), code=2)
    assert "error[unreadable_file]" in missing.stderr


def test_set_show_history(db, tmp_path):
    AccountService(db).create_organisation("acme")
    f1, f2, bad = tmp_path / "v1.yaml", tmp_path / "v2.yaml", tmp_path / "bad.yaml"
    f1.write_text(V1)
    f2.write_text(V2)
    bad.write_text(BAD)
    shown = run("show", "--organisation", "acme")
    assert shown.stdout == default_source() and "built-in default" in shown.stderr
    assert "version 1 is now in force" in run("set", str(f1), "--organisation", "acme", "-m", "first").stdout
    assert "unchanged" in run("set", str(f1), "--organisation", "acme").stdout
    run("set", str(f2), "--org", "acme", "--comment", "second")
    assert "error[invalid_policy]" in run("set", str(bad), "--organisation", "acme", code=2).stderr
    assert run("show", "--organisation", "acme").stdout == V2
    assert run("show", "--organisation", "acme", "--version", "1").stdout == V1
    assert json.loads(run("show", "-o", "acme", "--json").stdout)["version"] == 2
    assert "error[not_found]" in run("show", "--organisation", "acme", "--version", "9", code=3).stderr
    assert "error[not_found]" in run("show", "--organisation", "nobody", code=3).stderr
    history = run("history", "--organisation", "acme").stdout.splitlines()
    assert len(history) == 2 and history[0].startswith("version 2") and history[0].endswith("second")
    diffed = run("history", "--organisation", "acme", "--diff").stdout
    assert "+  - name: review-matches" in diffed and "--- built-in default" in diffed
    rows = [json.loads(line) for line in run("history", "-o", "acme", "--json").stdout.splitlines()]
    assert [r["version"] for r in rows] == [2, 1] and all(r["created_by"].startswith("cli") for r in rows)
    assert [r["details"]["version"] for r in audit.list_records(db, limit=None) if r["action"] == "policy_set"] == [
        1, 2]


def test_backtest_command(db, tmp_path):
    org = AccountService(db).create_organisation("acme").id
    with db.session() as s:
        item = ContentItem(organisation_id=org, external_id="post-9", source="upload", status="decided")
        s.add(item)
        s.flush()
        evidence = Evidence(org, "upload", matches=[{"bank": "known", "signal_type": "md5", "distance": 0}])
        s.add(Decision(content_id=item.id, organisation_id=org, outcome="remove", rule="remove-matches",
                       evidence=evidence.to_dict()))
    draft = tmp_path / "draft.yaml"
    draft.write_text(V2)
    out = run("backtest", str(draft), "--organisation", "acme", "--since", "7d").stdout
    assert "1 decided submission(s)" in out and "1 would change" in out
    assert f"{item.id} (post-9): remove [remove-matches] -> review [review-matches]" in out
    report = json.loads(run("backtest", str(draft), "-o", "acme", "--since", "1d", "--json").stdout)
    assert report["changed"] == 1 and report["after"]["review"] == 1
    assert "error[invalid_duration]" in run("backtest", str(draft), "-o", "acme", "--since", "x", code=2).stderr


def test_default_prints_the_builtin_policy():
    assert run("default").stdout == default_source()
