"""`bastion review`: queues, the QA share and agreement through Typer's test runner (SQLite and PostgreSQL)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from bastion.accounts.service import AccountService
from bastion.cli.review import app
from bastion.storage.models import Organisation, ReviewQueue

runner = CliRunner()


def run(*args: str, code: int = 0):
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, (result.exit_code, result.output)
    return result


def test_queue_create_list_delete_and_qa_share(db):
    AccountService(db).create_organisation("alpha")
    out = run("queue-create", "alpha", "french", "--language", "fr", "--role", "lead", "--sla-minutes", "60")
    assert json.loads(out.stdout)["criteria"] == {"languages": ["fr"]}
    listed = [json.loads(line) for line in run("queues", "alpha", "--json").stdout.splitlines()]
    assert [q["name"] for q in listed] == ["french", "review", "escalation", "appeals", "qa"]
    assert listed[0]["roles"] == ["lead"] and listed[0]["sla_minutes"] == 60
    assert "french" in run("queues", "alpha").stdout
    bad = run("queue-create", "alpha", "bad", "--category", "nonsense", code=2)
    assert "invalid_queue_criteria" in bad.output
    run("qa-share", "alpha", "0.25")
    with db.session() as s:
        org = s.query(Organisation).filter_by(name="alpha").one()
        assert org.config["review"]["qa_share"] == 0.25
    assert "invalid_qa_share" in run("qa-share", "alpha", "2", code=2).output
    assert json.loads(run("agreement", "alpha", "--json").stdout)["checked"] == 0
    assert "agreement n/a (nothing checked yet)" in run("agreement", "alpha").stdout
    run("queue-delete", "alpha", "french")
    with db.session() as s:
        assert s.query(ReviewQueue).count() == 0
    assert "queue_not_found" in run("queue-delete", "alpha", "french", code=3).output
