"""``/v1/policy``: read, set (YAML or JSON body), versions, validate, backtest; the policy scope; organisations
never see or change each other's policy. SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from bastion import audit
from bastion.accounts.service import AccountService
from bastion.api.app import create_app
from bastion.policy import Evidence
from bastion.policy.engine import default_source
from bastion.storage.models import ContentItem, Decision

V1 = "rules:\n  - name: remove-matches\n    when: {any_match: {}}\n    outcome: remove\n"
V2 = "rules:\n  - name: review-matches\n    when: {any_match: {}}\n    outcome: review\n"
BAD = "rules:\n  - name: a\n    outcome: remove\n  - name: a\n    outcome: delete\n"
YAML = {"Content-Type": "application/yaml"}


@pytest.fixture
def client(db, settings):
    with TestClient(create_app(db, settings)) as c:
        yield c


def _key(db, org: str, scopes: list[str]) -> dict[str, str]:
    svc = AccountService(db)
    if org not in {o.name for o in svc.list_organisations()}:
        svc.create_organisation(org)
    return {"Authorization": f"Bearer {svc.create_api_key(org, 'k', scopes)[1]}"}


def test_get_put_versions_roundtrip(db, client):
    a = _key(db, "acme", ["policy"])
    r = client.get("/v1/policy", headers=a)
    assert r.status_code == 200
    body = r.json()
    assert (body["version"], body["builtin"], body["default"]) == (None, True, "allow")
    assert body["source"] == default_source()
    r = client.put("/v1/policy", headers={**a, **YAML}, params={"comment": "first"}, content=V1)
    assert r.status_code == 200, r.text
    assert (r.json()["changed"], r.json()["policy"]["version"], r.json()["policy"]["comment"]) == (True, 1, "first")
    r = client.put("/v1/policy", headers=a, json={"source": V2, "comment": "second"})
    assert r.json()["policy"]["version"] == 2
    r = client.put("/v1/policy", headers=a, json={"source": V2})
    assert (r.json()["changed"], r.json()["policy"]["version"]) == (False, 2)
    body = client.get("/v1/policy", headers=a).json()
    assert (body["version"], body["builtin"], body["source"], body["rule_names"]) == (2, False, V2, ["review-matches"])
    versions = client.get("/v1/policy/versions", headers=a).json()["versions"]
    assert [(v["version"], v["comment"]) for v in versions] == [(2, "second"), (1, "first")]
    assert all("source" not in v and "diff" not in v for v in versions)
    diffed = client.get("/v1/policy/versions", headers=a, params={"diff": "true"}).json()["versions"]
    assert "+  - name: review-matches" in diffed[0]["diff"]
    one = client.get("/v1/policy/versions/1", headers=a).json()
    assert (one["version"], one["source"]) == (1, V1)
    r = client.get("/v1/policy/versions/3", headers=a)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "not_found")
    actors = [r["actor"] for r in audit.list_records(db, limit=None) if r["action"] == "policy_set"]
    assert len(actors) == 2 and all(x.startswith("api-key:") for x in actors)


def test_invalid_policy_is_422_with_problems_and_stores_nothing(db, client):
    a = _key(db, "acme", ["policy"])
    for kwargs in ({"headers": {**a, **YAML}, "content": BAD}, {"headers": a, "json": {"source": BAD}}):
        r = client.put("/v1/policy", **kwargs)
        assert r.status_code == 422
        err = r.json()["error"]
        assert err["code"] == "invalid_policy"
        assert [(p["line"], p["path"], p["rule"]) for p in err["details"]["problems"]] == [
            (4, "rules[1].name", "a"), (5, "rules[1].outcome", "a")
        ]
    assert client.get("/v1/policy", headers=a).json()["version"] is None
    assert client.get("/v1/policy/versions", headers=a).json()["versions"] == []


def test_bad_bodies(db, client):
    a = _key(db, "acme", ["policy"])
    cases = [
        ({"headers": {**a, "Content-Type": "application/xml"}, "content": "<x/>"}, 415, "unsupported_media_type"),
        ({"headers": {**a, "Content-Type": "application/json"}, "content": "{"}, 400, "invalid_json"),
        ({"headers": a, "json": ["rules"]}, 400, "invalid_json"),
        ({"headers": a, "json": {"comment": "no source"}}, 400, "invalid_request"),
        ({"headers": a, "json": {"source": V1, "colour": "red"}}, 400, "unknown_field"),
        ({"headers": a, "json": {"source": V1, "comment": 5}}, 400, "invalid_request"),
        ({"headers": {**a, **YAML}, "content": b"\xff\xfe"}, 400, "invalid_encoding"),
        ({"headers": {**a, **YAML}, "content": "x" * 2_000_000}, 413, "body_too_large"),
    ]
    for kwargs, status, code in cases:
        r = client.put("/v1/policy", **kwargs)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), (kwargs.get("json"), r.text)


def test_validate(db, client):
    a = _key(db, "acme", ["policy"])
    r = client.post("/v1/policy/validate", headers={**a, **YAML}, content=V1)
    assert r.status_code == 200
    assert r.json() == {
        "valid": True, "rules": 1, "shadow_rules": 0, "default": "allow", "rule_names": ["remove-matches"]
    }
    r = client.post("/v1/policy/validate", headers=a, json={"source": BAD})
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_policy")
    assert client.get("/v1/policy/versions", headers=a).json()["versions"] == []  # validating stores nothing


def _decided(db, org_id: int, external_id: str, outcome: str, rule: str | None, evidence: Evidence) -> None:
    with db.session() as s:
        item = ContentItem(organisation_id=org_id, external_id=external_id, source="upload", status="decided")
        s.add(item)
        s.flush()
        s.add(Decision(content_id=item.id, organisation_id=org_id, outcome=outcome, rule=rule,
                       evidence=evidence.to_dict()))


def test_backtest_is_for_the_callers_organisation(db, client):
    a = _key(db, "acme", ["policy"])
    b = _key(db, "other", ["policy"])
    svc = AccountService(db)
    acme, other = svc.get_organisation("acme").id, svc.get_organisation("other").id
    match = {"bank": "known", "signal_type": "md5", "distance": 0, "labels": {}}
    _decided(db, acme, "a-1", "remove", "remove-matches", Evidence(acme, "upload", matches=[match]))
    _decided(db, acme, "a-2", "allow", None, Evidence(acme, "upload"))
    _decided(db, other, "b-1", "remove", "remove-matches", Evidence(other, "upload", matches=[match]))
    r = client.post("/v1/policy/backtest", headers=a, json={"source": V2, "since": "1d"})
    assert r.status_code == 200, r.text
    report = r.json()
    assert (report["organisation_id"], report["considered"], report["changed"]) == (acme, 2, 1)
    assert [(i["external_id"], i["old_outcome"], i["new_outcome"], i["new_rule"]) for i in report["items"]] == [
        ("a-1", "remove", "review", "review-matches")
    ]
    assert report["before"]["remove"] == 1 and report["after"]["review"] == 1
    r = client.post("/v1/policy/backtest", headers={**b, **YAML}, params={"since": "2h"}, content=V2)
    assert r.json()["considered"] == 1 and r.json()["items"][0]["external_id"] == "b-1"
    r = client.post("/v1/policy/backtest", headers=a, json={"source": V2, "since": "soon"})
    assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_duration")
    r = client.post("/v1/policy/backtest", headers=a, json={"source": V2, "max_items": "many"})
    assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_request")
    r = client.post("/v1/policy/backtest", headers=a, json={"source": BAD})
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_policy")


def test_organisations_cannot_read_or_set_each_others_policy(db, client):
    a = _key(db, "acme", ["policy"])
    b = _key(db, "other", ["policy", "admin", "review", "submit", "curate"])
    client.put("/v1/policy", headers=a, json={"source": V1, "comment": "acme's secret rules"})
    body = client.get("/v1/policy", headers=b).json()
    assert body["version"] is None and body["builtin"] is True
    assert client.get("/v1/policy/versions", headers=b).json()["versions"] == []
    r = client.get("/v1/policy/versions/1", headers=b)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "not_found")
    client.put("/v1/policy", headers=b, json={"source": V2})
    assert client.get("/v1/policy", headers=a).json()["source"] == V1  # B's PUT set B's policy only
    assert client.get("/v1/policy", headers=b).json()["source"] == V2
    assert client.get("/v1/policy/versions/1", headers=a).json()["source"] == V1


def test_policy_scope_is_required(db, client):
    no = _key(db, "acme", ["submit", "review", "curate", "admin", "metrics"])
    for method, path in (("GET", "/v1/policy"), ("PUT", "/v1/policy"), ("GET", "/v1/policy/versions"),
                         ("GET", "/v1/policy/versions/1"), ("POST", "/v1/policy/validate"),
                         ("POST", "/v1/policy/backtest")):
        r = client.request(method, path, headers=no, json={"source": V1})
        assert (r.status_code, r.json()["error"]["code"]) == (403, "forbidden_scope"), (method, path)


def test_get_shows_a_stored_version_that_no_longer_passes_with_its_problems(db, client):
    from bastion.storage.models import PolicyVersion

    a = _key(db, "acme", ["policy"])
    acme = AccountService(db).get_organisation("acme").id
    with db.session() as s:
        s.add(PolicyVersion(organisation_id=acme, version=1, source=BAD))
    body = client.get("/v1/policy", headers=a).json()
    assert body["version"] == 1 and body["source"] == BAD
    assert [p["line"] for p in body["problems"]] == [4, 5]
