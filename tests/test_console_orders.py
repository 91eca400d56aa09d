"""The orders' console pages over HTTP (SQLite and PostgreSQL): who may see and answer what; a refused answer shows
the page again with its code; another organisation's order is 404."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from bastion.accounts.service import AccountService
from bastion.api.app import create_app
from bastion.compliance.authorities import AuthorityService
from bastion.compliance.orders import OrderService, set_mode
from bastion.storage.models import ContentItem

PASSWORD = "correct horse battery"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def setup(db, settings):
    accounts = AccountService(db)
    acme = accounts.create_organisation("acme").id
    accounts.create_organisation("other")
    set_mode(db, "acme", "review", actor="test")
    with db.session() as s:
        s.add(ContentItem(organisation_id=acme, external_id="post-1", source="text", signals=[]))
    AuthorityService(db).create("bka", "competent_authority", "DE")
    AuthorityService(db).accept("bka", "acme")
    for org, email, role in (
        ("acme", "lee@acme.example", "lead"),
        ("acme", "rita@acme.example", "reviewer"),
        ("other", "oli@other.example", "lead"),
        ("bka", "ida@bka.example", "authority"),
    ):
        user = accounts.create_user(org, email, role)
        accounts.set_password(org, user.id, PASSWORD)
    order = {
        "platform": "acme",
        "kind": "removal_order",
        "reference": "BKA-7",
        "issuer": "BKA",
        "member_state": "DE",
        "legal_basis": "TCO Art. 3",
        "reasons": "Terrorist content",
        "issued_at": "2026-01-05T09:00:00Z",
        "content": [{"content_id": "post-1"}],
    }
    return OrderService(db, settings).receive(accounts.get_organisation("bka").id, order, actor="test")["id"]


def _client(db, settings, email: str) -> TestClient:
    c = TestClient(create_app(db, settings))
    token = CSRF_RE.search(c.get("/console/login").text).group(1)
    r = c.post(
        "/console/login", data={"csrf_token": token, "email": email, "password": PASSWORD}, follow_redirects=False
    )
    assert r.status_code == 303, r.text
    return c


def _csrf(c: TestClient, path: str) -> str:
    return CSRF_RE.search(c.get(path).text).group(1)


def test_who_sees_and_answers_orders(db, settings, setup):
    order_id = setup
    with _client(db, settings, "rita@acme.example") as reviewer:
        r = reviewer.get("/console/orders")
        assert r.status_code == 403 and "forbidden_role" in r.text
    with _client(db, settings, "oli@other.example") as other:
        assert other.get(f"/console/orders/{order_id}").status_code == 404
        token = _csrf(other, "/console/orders")
        r = other.post(f"/console/orders/{order_id}/execute", data={"csrf_token": token})
        assert r.status_code == 404
    with _client(db, settings, "ida@bka.example") as authority:
        assert "BKA-7" in authority.get("/console/orders").text
        assert authority.get("/console/lead/dashboard").status_code == 403  # no platform page for an authority
        token = _csrf(authority, f"/console/orders/{order_id}")
        r = authority.post(f"/console/orders/{order_id}/execute", data={"csrf_token": token})
        assert r.status_code == 403  # only the platform's leads answer
        r = authority.post(
            f"/console/orders/{order_id}/clarification", data={"csrf_token": token, "clarification": "x"}
        )
        assert r.status_code == 409 and 'data-code="not_awaiting_clarification"' in r.text
    with _client(db, settings, "lee@acme.example") as lead:
        page = lead.get(f"/console/orders/{order_id}")
        assert page.status_code == 200 and 'data-deadline="' in page.text
        token = _csrf(lead, f"/console/orders/{order_id}")
        r = lead.post(
            f"/console/orders/{order_id}/cannot-comply",
            data={"csrf_token": token, "reason": "insufficient_information", "explanation": ""},
        )
        assert r.status_code == 400 and 'data-code="explanation_required"' in r.text
        r = lead.post(
            f"/console/orders/{order_id}/cannot-comply",
            data={"csrf_token": token, "reason": "manifest_error", "explanation": "Wrong platform."},
            follow_redirects=False,
        )
        assert r.status_code == 303 and r.headers["location"].endswith("saved=cannot_comply")
        r = lead.post(f"/console/orders/{order_id}/execute", data={"csrf_token": token})
        assert r.status_code == 409 and 'data-code="order_not_open"' in r.text
        assert lead.get("/console/escalations").status_code == 200


def test_leads_see_escalations_and_their_channels(db, settings, setup):
    from bastion.compliance.escalation import open_escalation
    from bastion.storage.models import Decision

    AuthorityService(db).create("europol", "law_enforcement", "EU", contact_email="iru@europol.example", fallback=True)
    with db.session() as s:
        item = s.query(ContentItem).filter_by(external_id="post-1").one()
        decision = Decision(content_id=item.id, organisation_id=item.organisation_id, version=1, outcome="escalate")
        s.add(decision)
        s.flush()
        open_escalation(s, item, decision, "test")
    with _client(db, settings, "lee@acme.example") as lead:
        page = lead.get("/console/escalations").text
        assert 'data-status="pending"' in page and "europol (EU)" in page and "email: pending" in page
    with _client(db, settings, "rita@acme.example") as reviewer:
        assert reviewer.get("/console/escalations").status_code == 403
