"""The console's compliance pages (bastion.console.compliance_pages): the dashboard (clocks, missed deadlines,
exposed status, complaints, preservation, penalties; the turnover form for admins) and the transparency report
with charts. TestClient over real SQLite and PostgreSQL; generated benign rows only."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from bastion.accounts.service import AccountService
from bastion.api.app import create_app
from bastion.compliance import exposure
from bastion.storage.models import Authority, ContentItem, Decision, Order, utcnow

PASSWORD = "correct horse battery"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def app(db, settings):
    return create_app(db, settings)


@pytest.fixture
def orgs(db):
    accounts = AccountService(db)
    ids = {}
    for org in ("alpha", "beta"):
        ids[org] = accounts.create_organisation(org).id
        for name, role in (("r1", "reviewer"), ("lead", "lead"), ("boss", "admin")):
            u = accounts.create_user(org, f"{name}@{org}.example", role)
            accounts.set_password(org, u.id, PASSWORD)
    return ids


def _client(app, who: str) -> TestClient:
    c = TestClient(app)
    token = CSRF_RE.search(c.get("/console/login").text).group(1)
    r = c.post("/console/login", data={"csrf_token": token, "email": who, "password": PASSWORD}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return c


def _orders(db, org_id: int) -> None:
    accounts = AccountService(db)
    authority_org = accounts.create_organisation("pharos").id
    now = utcnow()
    with db.session() as s:
        a = Authority(organisation_id=authority_org, kind="competent_authority", member_state="FR")
        s.add(a)
        s.flush()
        for ref, received, status, executed in (
            ("open-1", now - timedelta(minutes=20), "received", None),
            ("late-1", now - timedelta(days=9), "executed", timedelta(hours=2)),
            ("ok-1", now - timedelta(days=5), "executed", timedelta(minutes=5)),
        ):
            s.add(
                Order(
                    authority_id=a.id,
                    organisation_id=org_id,
                    kind="removal_order",
                    reference=ref,
                    issuer="OCLCTIC",
                    member_state="FR",
                    legal_basis="TCO Art. 3",
                    reasons="video",
                    issued_at=received,
                    received_at=received,
                    status=status,
                    deadline_at=received + timedelta(hours=1),
                    executed_at=received + executed if executed else None,
                )
            )
        item = ContentItem(
            organisation_id=org_id,
            external_id="x1",
            source="upload",
            content_type="image",
            status="decided",
            signals=[],
            jurisdictions=["FR"],
        )
        s.add(item)
        s.flush()
        s.add(
            Decision(
                content_id=item.id,
                organisation_id=org_id,
                version=1,
                outcome="remove",
                automated=True,
                reason="known",
                evidence={"matches": [{"bank": "b", "entry_id": 1}]},
            )
        )


def test_reviewers_get_403_leads_see_their_own_organisation(db, app, orgs):
    _orders(db, orgs["alpha"])
    reviewer = _client(app, "r1@alpha.example")
    for path in ("/console/compliance", "/console/compliance/transparency"):
        r = reviewer.get(path)
        assert r.status_code == 403 and "forbidden_role" in r.text
    lead = _client(app, "lead@alpha.example")
    page = lead.get("/console/compliance").text
    assert "data-order" in page and "open-1" in page and "late-1" in page  # open clock, missed deadline
    assert 'data-exposed="yes"' in page  # two executed removal orders in 12 months
    assert "£18,000,000" in page and 'id="turnover-form"' not in page  # only admins set the turnover
    assert 'href="/console/compliance"' in page  # in the navigation
    beta = _client(app, "lead@beta.example").get("/console/compliance").text
    assert "open-1" not in beta and 'data-exposed="no"' in beta and 'id="no-open-orders"' in beta


def test_admin_sets_the_turnover_and_bad_amounts_are_refused(db, app, orgs):
    boss = _client(app, "boss@alpha.example")
    token = CSRF_RE.search(boss.get("/console/compliance").text).group(1)
    r = boss.post(
        "/console/compliance/turnover",
        data={"csrf_token": token, "global_turnover_eur": "2,000,000,000", "qualifying_worldwide_revenue_gbp": ""},
        follow_redirects=False,
    )
    assert r.status_code == 303
    page = boss.get(r.headers["location"]).text
    assert "€80,000,000" in page and "€120,000,000" in page and 'id="turnover-saved"' in page
    r = boss.post("/console/compliance/turnover", data={"csrf_token": token, "global_turnover_eur": "lots"})
    assert r.status_code == 400 and 'data-code="invalid_amount"' in r.text and 'value="lots"' in r.text
    assert exposure.compliance_config(db, orgs["alpha"]) == {"global_turnover_eur": 2_000_000_000}
    r = boss.post("/console/compliance/turnover", data={"global_turnover_eur": "1"})  # no CSRF token
    assert r.status_code == 403
    lead = _client(app, "lead@alpha.example")
    lead_token = CSRF_RE.search(lead.get("/console/queues").text).group(1)
    r = lead.post("/console/compliance/turnover", data={"csrf_token": lead_token, "global_turnover_eur": "5"})
    assert r.status_code == 403 and exposure.compliance_config(db, orgs["alpha"])["global_turnover_eur"] == 2e9


def test_the_transparency_page_shows_the_report_with_safe_charts(db, app, orgs):
    _orders(db, orgs["alpha"])
    lead = _client(app, "lead@alpha.example")
    page = lead.get("/console/compliance/transparency").text
    report = page.split('<article id="report">', 1)[1].split("</article>", 1)[0]
    assert report.count("<svg") == 4 and "<script" not in report and "style=" not in report
    assert "Items removed or disabled" in page and "KEYWORD_TERRORIST_CONTENT" not in page
    r = lead.get("/console/compliance/transparency?from=2025-02-01&to=2025-01-01")
    assert r.status_code == 400 and 'data-code="invalid_period"' in r.text
    r = lead.get("/console/compliance/transparency?from=soon")
    assert r.status_code == 400 and 'data-code="invalid_period"' in r.text
