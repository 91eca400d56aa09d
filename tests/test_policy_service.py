"""Policy versions in the database (set, current, get, history with diffs, audit) and backtests over stored
submissions and decisions; SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from bastion import audit
from bastion.accounts.service import AccountService
from bastion.errors import InvalidInput, InvalidPolicy, NotFound
from bastion.policy import Evidence
from bastion.policy.backtest import backtest, parse_duration
from bastion.policy.engine import compile_policy, decide, default_policy, default_source
from bastion.policy.service import PolicyService
from bastion.storage.models import ContentItem, Decision, PolicyVersion, utcnow

V1 = """\
rules:
  - name: remove-any-match
    when: {any_match: {}}
    outcome: remove
"""
V2 = """\
rules:
  - name: review-any-match
    when: {any_match: {}}
    outcome: review
  - name: shadow-geo
    shadow: true
    when: {jurisdiction: DE}
    outcome: restrict
    in: submission
"""


@pytest.fixture
def orgs(db):
    svc = AccountService(db)
    return svc.create_organisation("acme").id, svc.create_organisation("other").id


def _audit(db, action: str) -> list[dict]:
    return [r for r in audit.list_records(db, limit=None) if r["action"] == action]


def test_no_policy_means_the_builtin_default(db, orgs):
    acme, _ = orgs
    svc = PolicyService(db)
    version, policy = svc.current(acme)
    assert version is None and policy is default_policy()
    assert svc.current_info(acme) is None and svc.history(acme) == []


def test_set_versions_current_get_and_audit(db, orgs):
    acme, other = orgs
    svc = PolicyService(db, "alice")
    first = svc.set_policy(acme, V1, "first rules")
    assert (first.version, first.changed, first.comment, first.created_by) == (1, True, "first rules", "alice")
    version, policy = svc.current(acme)
    assert version == 1 and policy.rule_names == ["remove-any-match"]
    second = PolicyService(db, "bob").set_policy(acme, V2, "softer")
    assert second.version == 2
    version, policy = svc.current(acme)
    assert version == 2
    assert decide(policy, Evidence(acme, "upload", matches=[{"bank": "b"}]), version).outcome == "review"
    assert svc.current(other)[0] is None  # another organisation is untouched
    assert svc.get(acme, 1).source == V1 and svc.get(acme, 2).source == V2
    with pytest.raises(NotFound):
        svc.get(other, 1)
    with pytest.raises(NotFound):
        svc.get(acme, 3)
    records = _audit(db, "policy_set")
    assert [(r["actor"], r["organisation_id"], r["target"]) for r in records] == [
        ("alice", acme, f"policy:{acme}"), ("bob", acme, f"policy:{acme}")
    ]
    assert records[1]["details"] == {
        "version": 2, "previous_version": 1, "comment": "softer", "sha256": compile_policy(V2).sha256,
        "rules": 1, "shadow_rules": 1,
    }
    assert audit.verify(db).ok


def test_invalid_policy_stores_nothing(db, orgs):
    acme, _ = orgs
    svc = PolicyService(db)
    with pytest.raises(InvalidPolicy) as info:
        svc.set_policy(acme, "rules:\n  - name: a\n    outcome: delete\n")
    assert info.value.details["problems"][0]["line"] == 3
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(PolicyVersion)) == 0
    assert _audit(db, "policy_set") == []
    with pytest.raises(NotFound):
        svc.set_policy(9999, V1)
    assert _audit(db, "policy_set") == []


def test_setting_the_same_text_again_changes_nothing(db, orgs):
    acme, _ = orgs
    svc = PolicyService(db)
    svc.set_policy(acme, V1)
    again = svc.set_policy(acme, V1, "again")
    assert (again.version, again.changed) == (1, False)
    assert len(svc.history(acme)) == 1 and len(_audit(db, "policy_set")) == 1
    assert svc.set_policy(acme, V2).version == 2
    assert svc.set_policy(acme, V1).version == 3  # going back is a new version


def test_history_newest_first_with_diffs(db, orgs):
    acme, _ = orgs
    svc = PolicyService(db, "alice")
    svc.set_policy(acme, V1, "one")
    svc.set_policy(acme, V2, "two")
    plain = svc.history(acme)
    assert [(h.version, h.comment, h.created_by, h.diff, h.source) for h in plain] == [
        (2, "two", "alice", None, None), (1, "one", "alice", None, None)
    ]
    diffed = svc.history(acme, diff=True)
    assert diffed[0].diff.startswith("--- version 1\n+++ version 2\n")
    assert "-  - name: remove-any-match\n" in diffed[0].diff and "+  - name: review-any-match\n" in diffed[0].diff
    assert diffed[1].diff.startswith("--- built-in default\n+++ version 1\n")
    assert diffed[0].to_dict()["diff"] == diffed[0].diff


def test_current_follows_a_change_made_through_another_service(db, orgs):
    acme, _ = orgs
    reader = PolicyService(db)
    PolicyService(db).set_policy(acme, V1)
    assert reader.current(acme)[0] == 1
    PolicyService(db).set_policy(acme, V2)
    version, policy = reader.current(acme)
    assert version == 2 and policy is compile_policy(V2)  # memoised on the text


# -- backtest --------------------------------------------------------------------------------------------------------


def _item(db, org: int, external_id: str, decisions: list[dict], *, age: timedelta = timedelta(hours=1),
          **item_fields) -> int:
    with db.session() as s:
        item = ContentItem(organisation_id=org, external_id=external_id, source=item_fields.pop("source", "upload"),
                           created_at=utcnow() - age, status="decided" if decisions else "pending", **item_fields)
        s.add(item)
        s.flush()
        for i, d in enumerate(decisions, start=1):
            s.add(Decision(content_id=item.id, organisation_id=org, version=i, **d))
        return item.id


def _auto(evidence: Evidence, policy_source: str = V1, version: int = 1) -> dict:
    v = decide(compile_policy(policy_source), evidence, version)
    return {"outcome": v.outcome, "rule": v.rule, "policy_version": version, "evidence": evidence.to_dict()}


def test_backtest_reports_item_changes_and_totals(db, orgs):
    acme, other = orgs
    match = {"bank": "known", "signal_type": "md5", "distance": 0, "labels": {}, "source": "own_review"}
    matched = _item(db, acme, "post-1", [_auto(Evidence(acme, "upload", matches=[match]))])
    german = _item(db, acme, "post-2", [_auto(Evidence(acme, "upload", jurisdictions=["DE"]))])
    clean = _item(db, acme, "post-3", [_auto(Evidence(acme, "text"))])
    # a reviewer's later decision (no evidence) is the one in force; the recorded evidence comes from version 1
    reviewed = _item(db, acme, "post-4", [
        _auto(Evidence(acme, "upload", matches=[match])),
        {"outcome": "allow", "rule": None, "automated": False, "actor": "reviewer", "evidence": {}},
    ])
    pending = _item(db, acme, "post-5", [])
    _item(db, acme, "old", [_auto(Evidence(acme, "upload", matches=[match]))], age=timedelta(days=30))
    _item(db, other, "theirs", [_auto(Evidence(other, "upload", matches=[match]))])

    report = backtest(db, acme, V2, "7d")
    assert (report.considered, report.skipped, report.changed, report.outcome_changed) == (4, 1, 2, 2)
    assert report.before == {"remove": 1, "restrict": 0, "review": 0, "escalate": 0, "allow": 3}
    assert report.after == {"remove": 0, "restrict": 0, "review": 2, "escalate": 0, "allow": 2}
    assert report.transitions == {"allow -> review": 1, "remove -> review": 1}
    assert report.rule_hits == {"(default)": 2, "review-any-match": 2}
    assert report.shadow_hits == {"shadow-geo": 1}
    items = {i.content_id: i for i in report.items}
    assert set(items) == {matched, reviewed}
    assert items[matched].to_dict() | {"created_at": None} == {
        "content_id": matched, "external_id": "post-1", "created_at": None, "old_outcome": "remove",
        "old_rule": "remove-any-match", "old_policy_version": 1, "old_automated": True, "new_outcome": "review",
        "new_rule": "review-any-match", "new_restrict_in": [], "new_queue": "review", "outcome_changed": True,
    }
    assert (items[reviewed].old_outcome, items[reviewed].old_automated, items[reviewed].new_outcome) == (
        "allow", False, "review")
    assert german not in items and clean not in items and pending not in items
    assert report.draft_sha256 == compile_policy(V2).sha256

    wider = backtest(db, acme, V2, timedelta(days=60))
    assert wider.considered == 5 and wider.changed == 3
    truncated = backtest(db, acme, V2, "60d", max_items=1)
    assert len(truncated.items) == 1 and truncated.truncated and truncated.changed == 3
    same = backtest(db, acme, V1, "7d")
    assert same.changed == 1 and [i.content_id for i in same.items] == [reviewed]  # only the reviewer's override
    assert backtest(db, other, V2, "7d").considered == 1


def test_backtest_fills_missing_evidence_from_the_item_and_refuses_bad_input(db, orgs):
    acme, _ = orgs
    _item(db, acme, "x", [{"outcome": "allow", "evidence": {"matches": []}}], jurisdictions=["DE"], surface="post")
    draft = (
        "rules:\n  - name: de-posts\n    when: {jurisdiction: DE, surface: post}\n    outcome: restrict\n"
        "    in: submission\n"
    )
    report = backtest(db, acme, draft, "1d")
    assert [(i.new_outcome, i.new_restrict_in) for i in report.items] == [("restrict", ["DE"])]
    with pytest.raises(InvalidPolicy):
        backtest(db, acme, "rules: {}", "1d")
    with pytest.raises(InvalidInput) as info:
        backtest(db, acme, V1, "a week")
    assert info.value.code == "invalid_duration"


def test_parse_duration():
    assert parse_duration("30m") == timedelta(minutes=30)
    assert parse_duration("12h") == timedelta(hours=12)
    assert parse_duration(" 7D ") == timedelta(days=7)
    assert parse_duration("2w") == timedelta(weeks=2)
    assert parse_duration(90) == timedelta(seconds=90)
    for bad in ("", "7", "d", "0d", "-1d", "99999w", "7 days", True):
        with pytest.raises(InvalidInput):
            parse_duration(bad)  # type: ignore[arg-type]


def test_default_source_round_trips_through_the_service(db, orgs):
    acme, _ = orgs
    PolicyService(db).set_policy(acme, default_source(), "start from the default")
    assert PolicyService(db).current(acme) == (1, default_policy())


def test_a_stored_version_that_no_longer_passes_is_skipped_for_the_newest_good_one(db, orgs, caplog, monkeypatch):
    """Rules stored before an upgrade tightened the checks must not stop decisions: the newest version that still
    passes is used (an error is logged once per process), else the built-in default."""
    from bastion.policy import service

    monkeypatch.setattr(service, "_reported", set())
    acme, other = orgs
    PolicyService(db).set_policy(acme, V1)
    broken = "rules:\n  - name: x\n    outcome: vanish\n"
    with db.session() as s:  # as if stored by an older Bastion
        s.add(PolicyVersion(organisation_id=acme, version=2, source=broken))
        s.add(PolicyVersion(organisation_id=other, version=1, source=broken))
    with caplog.at_level("ERROR", logger="bastion.policy.service"):
        assert PolicyService(db).current(acme) == (1, compile_policy(V1))
        assert PolicyService(db).current(acme)[0] == 1
        assert PolicyService(db).current(other) == (None, default_policy())
    assert sum("version 2 of organisation" in r.getMessage() for r in caplog.records) == 1
    assert PolicyService(db).get(acme, 2).source == broken  # still readable, for fixing
