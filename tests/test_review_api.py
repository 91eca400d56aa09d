"""The review API (bastion.api.review): appeals sent by the platform, queues, dashboard numbers and the QA share,
over HTTP (FastAPI TestClient) on SQLite and PostgreSQL (``db``). Content is generated benign text."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from bastion.accounts.service import AccountService
from bastion.api.app import create_app
from bastion.policy.service import PolicyService
from bastion.review import Reviewer, ReviewService
from bastion.storage.models import AuditRecord, Organisation

POLICY = """
version: 1
default:
  outcome: review
  reason: Unknown content is looked at by a person.
rules: []
"""


class Org:
    def __init__(self, db, name: str) -> None:
        accounts = AccountService(db)
        self.id = accounts.create_organisation(name).id
        PolicyService(db).set_policy(self.id, POLICY)
        with db.session() as s:
            s.get(Organisation, self.id).config = {"classifiers": {"semantic": False}}
        self.platform = {"Authorization": f"Bearer {accounts.create_api_key(name, 'platform', ['submit'])[1]}"}
        self.reader = {"Authorization": f"Bearer {accounts.create_api_key(name, 'dash', ['review'])[1]}"}
        self.policy = {"Authorization": f"Bearer {accounts.create_api_key(name, 'rules', ['policy'])[1]}"}
        self.admin = {"Authorization": f"Bearer {accounts.create_api_key(name, 'admin', ['admin'])[1]}"}
        self.people = {}
        for who, role in (("r1", "reviewer"), ("r2", "reviewer"), ("lead", "lead")):
            u = accounts.create_user(name, f"{who}@{name}.example", role)
            self.people[who] = Reviewer(u.id, self.id, role, u.email)


@pytest.fixture
def client(db, settings):
    with TestClient(create_app(db, settings)) as c:
        yield c


@pytest.fixture
def orgs(db):
    return Org(db, "alpha"), Org(db, "beta")


def _submit(client, org: Org, text: str, external_id: str) -> dict:
    r = client.post("/v1/content", headers=org.platform, json={"content_id": external_id, "text": text})
    assert r.status_code in (201, 202), r.text
    return r.json()


def test_an_appeal_end_to_end(db, settings, client, orgs):
    alpha, beta = orgs
    review = ReviewService(db, settings)
    submitted = _submit(client, alpha, "a generated holiday photo caption about a quiet beach", "post-1")
    content_id = submitted["content"]["id"]
    r1, r2 = alpha.people["r1"], alpha.people["r2"]
    # not yet decided by a person: the standing decision is "review", which is not appealable
    r = client.post(f"/v1/content/{content_id}/appeals", headers=alpha.platform, json={"reason": "why?"})
    assert (r.status_code, r.json()["error"]["code"]) == (409, "not_appealable")
    # the first reviewer removes it
    item = review.next_item(r1)
    assert item is not None and item.content_id == content_id
    review.decide(r1, item.id, "violating", category="propaganda", policy_reference="TOS 4.2", action="remove")
    # the platform sends the user's appeal
    body = {"reason": "It is a caption about a beach.", "appellant_id": "user-77"}
    r = client.post(f"/v1/content/{content_id}/appeals", headers=alpha.platform, json=body)
    assert r.status_code == 201, r.text
    appeal = r.json()["appeal"]
    assert (appeal["status"], appeal["content_id"], appeal["appellant_id"]) == ("open", content_id, "user-77")
    r = client.post(f"/v1/content/{content_id}/appeals", headers=alpha.platform, json=body)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "appeal_exists")
    # another organisation cannot appeal or see it
    r = client.post(f"/v1/content/{content_id}/appeals", headers=beta.platform, json=body)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "content_not_found")
    r = client.get(f"/v1/appeals/{appeal['id']}", headers=beta.platform)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "appeal_not_found")
    # the original reviewer is not offered it; a second reviewer overturns
    assert review.next_item(r1) is None
    got = review.next_item(r2)
    assert got is not None and got.kind == "appeal" and got.appeal_id == appeal["id"]
    review.decide(r2, got.id, "overturn", note="a beach caption")
    for headers in (alpha.platform, alpha.reader):
        r = client.get(f"/v1/appeals/{appeal['id']}", headers=headers)
        assert r.status_code == 200 and r.json()["appeal"]["status"] == "overturned"
    r = client.get(f"/v1/content/{content_id}", headers=alpha.platform)
    assert r.status_code == 200 and "allow" in r.text  # reinstated
    with db.session() as s:
        assert s.scalar(select(AuditRecord.actor).where(AuditRecord.action == "appeal_received")).startswith("api-key:")
    stats = client.get("/v1/review/stats", headers=alpha.reader).json()
    assert stats["appeals"]["overturn_rate"] == 1.0 and stats["appeals"]["decided"] == 1
    assert client.get("/v1/review/stats", headers=beta.reader).json()["appeals"]["decided"] == 0


def test_appeal_errors(client, orgs):
    alpha, _ = orgs
    r = client.post("/v1/content/999999/appeals", headers=alpha.platform, json={"reason": "x"})
    assert (r.status_code, r.json()["error"]["code"]) == (404, "content_not_found")
    r = client.get("/v1/appeals/999999", headers=alpha.platform)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "appeal_not_found")
    r = client.post("/v1/content/1/appeals", headers=alpha.reader, json={"reason": "x"})
    assert (r.status_code, r.json()["error"]["code"]) == (403, "forbidden_scope")


def test_queues_over_the_api(db, client, orgs):
    alpha, beta = orgs
    body = {"name": "french", "criteria": {"languages": ["fr"]}, "roles": ["reviewer"], "sla_minutes": 60}
    r = client.post("/v1/review/queues", headers=alpha.reader, json=body)
    assert (r.status_code, r.json()["error"]["code"]) == (403, "forbidden_scope")
    r = client.post("/v1/review/queues", headers=alpha.policy, json=body)
    assert r.status_code == 201, r.text
    assert r.json()["queue"]["sla_minutes"] == 60 and r.json()["queue"]["criteria"] == {"languages": ["fr"]}
    r = client.post("/v1/review/queues", headers=alpha.admin, json=body)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "queue_exists")
    r = client.post("/v1/review/queues", headers=alpha.admin, json={"name": "x", "criteria": {"colour": ["red"]}})
    assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_queue_criteria")
    r = client.post("/v1/review/queues", headers=alpha.admin, json={"name": "y", "sla_minutes": 0})
    assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_sla")
    names = [q["name"] for q in client.get("/v1/review/queues", headers=alpha.reader).json()["queues"]]
    assert names[0] == "french" and {"review", "appeals", "qa", "escalation"} <= set(names)
    assert "french" not in [q["name"] for q in client.get("/v1/review/queues", headers=beta.reader).json()["queues"]]
    r = client.delete("/v1/review/queues/french", headers=beta.admin)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "queue_not_found")
    assert client.delete("/v1/review/queues/french", headers=alpha.admin).status_code == 200
    r = client.delete("/v1/review/queues/french", headers=alpha.admin)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "queue_not_found")
    with db.session() as s:
        actions = s.scalars(select(AuditRecord.action).where(AuditRecord.action.like("review_queue_%"))).all()
    assert sorted(actions) == ["review_queue_created", "review_queue_deleted"]


def test_stats_and_qa_share(db, settings, client, orgs):
    alpha, beta = orgs
    for i in range(3):
        _submit(client, alpha, f"generated note number {i} about gardening", f"g-{i}")
    _submit(client, beta, "generated note about baking", "b-1")
    r = client.get("/v1/review/stats", headers=alpha.reader)
    assert r.status_code == 200
    stats = r.json()
    assert stats["window"] == "24h" and len(stats["decisions_per_hour"]) == 24
    review_q = next(q for q in stats["queues"] if q["queue"] == "review")
    assert review_q["open"] == 3
    assert set(stats) >= {"time_to_decision", "appeals", "qa", "qa_agreement"}
    r = client.get("/v1/review/stats?window=7d", headers=alpha.reader)
    assert r.status_code == 200 and len(r.json()["decisions_per_hour"]) == 168
    r = client.get("/v1/review/stats?window=year", headers=alpha.reader)
    assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_window")
    r = client.put("/v1/review/qa", headers=alpha.policy, json={"share": 0.5})
    assert (r.status_code, r.json()["error"]["code"]) == (403, "forbidden_scope")
    r = client.put("/v1/review/qa", headers=alpha.admin, json={"share": 2})
    assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_qa_share")
    r = client.put("/v1/review/qa", headers=alpha.admin, json={"share": 1})
    assert r.status_code == 200 and r.json() == {"qa_share": 1.0}
    review = ReviewService(db, settings)
    r1 = alpha.people["r1"]
    item = review.next_item(r1)
    review.decide(r1, item.id, "not_violating")  # share 1: always second-checked
    qa = review.next_item(alpha.people["r2"], queue="qa")
    assert qa is not None and qa.kind == "qa"
    review.decide(alpha.people["r2"], qa.id, "violating", category="propaganda", policy_reference="TOS 4.2")
    stats = client.get("/v1/review/stats", headers=alpha.reader).json()
    assert stats["qa"] == {"checked": 1, "disagreed": 1, "disagreement_rate": 1.0}
    assert stats["qa_agreement"]["per_reviewer"][0]["key"] == "r1@alpha.example"
    assert client.get("/v1/review/stats", headers=beta.reader).json()["qa"]["checked"] == 0
    with db.session() as s:
        assert s.get(Organisation, beta.id).config.get("review") is None
