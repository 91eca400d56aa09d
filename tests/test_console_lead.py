"""The leads' console pages (bastion.console.lead_pages): dashboard with charts, QA agreement, queue settings.
TestClient over real SQLite and PostgreSQL (``db``); generated benign rows only."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from bastion.accounts.service import AccountService
from bastion.api.app import create_app
from bastion.console import lead_charts
from bastion.review import ReviewService
from bastion.storage.models import (
    AuditRecord,
    ContentItem,
    Organisation,
    ReviewDecision,
    ReviewItem,
    ReviewQueue,
    utcnow,
)

PASSWORD = "correct horse battery"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
PAGES = (
    "/console/lead/dashboard",
    "/console/lead/qa",
    "/console/lead/appeals",
    "/console/lead/queues",
    "/console/lead/charts.css",
)


@pytest.fixture
def app(db, settings):
    return create_app(db, settings)


class People:
    def __init__(self, db) -> None:
        self.db = db
        accounts = AccountService(db)
        self.orgs = {}
        for org in ("alpha", "beta"):
            self.orgs[org] = accounts.create_organisation(org).id
            for name, role in (("r1", "reviewer"), ("lead", "lead"), ("boss", "admin")):
                u = accounts.create_user(org, f"{name}@{org}.example", role)
                accounts.set_password(org, u.id, PASSWORD)

    def client(self, app, who: str) -> TestClient:
        c = TestClient(app)
        token = CSRF_RE.search(c.get("/console/login").text).group(1)
        r = c.post(
            "/console/login", data={"csrf_token": token, "email": who, "password": PASSWORD}, follow_redirects=False
        )
        assert r.status_code == 303, r.text
        return c


@pytest.fixture
def people(db):
    return People(db)


def _csrf(c: TestClient, path: str = "/console/lead/queues") -> str:
    return CSRF_RE.search(c.get(path).text).group(1)


def _waiting(db, org_id: int, queue: str, n: int, age: timedelta) -> None:
    with db.session() as s:
        for i in range(n):
            item = ContentItem(organisation_id=org_id, external_id=f"{queue}-{i}", source="text", signals=[])
            s.add(item)
            s.flush()
            s.add(ReviewItem(organisation_id=org_id, content_id=item.id, queue=queue, created_at=utcnow() - age))


def _decided(db, org_id: int, queue: str, seconds: float) -> None:
    with db.session() as s:
        item = ContentItem(organisation_id=org_id, external_id=f"d-{queue}-{seconds}", source="text", signals=[])
        s.add(item)
        s.flush()
        row = ReviewItem(organisation_id=org_id, content_id=item.id, queue=queue, status="done", created_at=utcnow())
        s.add(row)
        s.flush()
        s.add(
            ReviewDecision(
                item_id=row.id,
                organisation_id=org_id,
                content_id=item.id,
                reviewer_id=1,
                verdict="not_violating",
                seconds=seconds,
                created_at=utcnow(),
            )
        )


def test_reviewers_get_403_leads_and_admins_200(app, people):
    reviewer = people.client(app, "r1@alpha.example")
    for path in PAGES:
        r = reviewer.get(path)
        assert r.status_code == 403 and "forbidden_role" in r.text, path
    reviewer_token = CSRF_RE.search(reviewer.get("/console/queues").text).group(1)
    r = reviewer.post("/console/lead/queues", data={"csrf_token": reviewer_token, "name": "sneaky"})
    assert r.status_code == 403
    for who in ("lead@alpha.example", "boss@alpha.example"):
        c = people.client(app, who)
        for path in PAGES:
            r = c.get(path)
            assert r.status_code == 200, (who, path, r.status_code)


def test_dashboard_shows_own_organisation_numbers_with_safe_charts(db, app, people):
    _waiting(db, people.orgs["alpha"], "alpha-only-queue", 3, timedelta(hours=2))
    _waiting(db, people.orgs["beta"], "beta-secret-queue", 5, timedelta(hours=9))
    _decided(db, people.orgs["alpha"], "alpha-only-queue", 90)
    _decided(db, people.orgs["beta"], "beta-secret-queue", 7)
    c = people.client(app, "lead@alpha.example")
    r = c.get("/console/lead/dashboard")
    assert r.status_code == 200
    html = r.text
    assert "alpha-only-queue" in html and "beta-secret-queue" not in html
    assert re.search(r'id="tile-waiting">3<', html) and re.search(r'id="tile-decided">1<', html)
    assert html.count("<svg") == 3 and 'role="img"' in html and "aria-labelledby" in html
    assert "<script" not in html.split("<main", 1)[1].split("</main>")[0]  # no inline script in the page body
    assert "style=" not in html and "<style" not in html  # the CSP allows no inline style either
    assert 'href="/console/lead/charts.css"' in html
    assert "default-src 'self'" in r.headers["content-security-policy"]
    week = c.get("/console/lead/dashboard?window=7d")
    assert week.status_code == 200 and '<option value="7d" selected>' in week.text
    assert c.get("/console/lead/dashboard?window=forever").status_code == 200  # unknown: the default window
    css = c.get("/console/lead/charts.css")
    assert css.headers["content-type"].startswith("text/css") and ".pygal-chart .color-0" in css.text
    beta = people.client(app, "lead@beta.example").get("/console/lead/dashboard").text
    assert "beta-secret-queue" in beta and "alpha-only-queue" not in beta


def test_chart_svg_is_sanitised():
    chart = lead_charts.bar()
    chart.x_labels = ["<script>alert(1)</script>", "q2"]
    chart.add("Median", [1, 2])
    svg = lead_charts.render(chart, title="Time & <b>x</b>", description="d")
    assert svg.startswith("<svg") and 'role="img"' in svg
    assert "<script" not in svg and "<style" not in svg and "style=" not in svg and " on" not in svg.lower()
    assert "&lt;script&gt;" in svg and "Time &amp; &lt;b&gt;x&lt;/b&gt;" in svg
    assert "<rect" in svg
    assert "<script" not in lead_charts.stylesheet() and "&gt;" not in lead_charts.stylesheet()


def test_qa_agreement_page_per_reviewer_and_category(db, settings, app, people):
    alpha = people.orgs["alpha"]
    accounts = AccountService(db)
    first = next(u for u in accounts.list_users(alpha) if u.email == "r1@alpha.example")
    with db.session() as s:
        item = ContentItem(organisation_id=alpha, external_id="qa-1", source="text", signals=[])
        s.add(item)
        s.flush()
        rows = []
        for i, (category, agrees) in enumerate([("propaganda", True), ("propaganda", False), ("recruitment", True)]):
            ri = ReviewItem(organisation_id=alpha, content_id=item.id, queue="review", status="done")
            qi = ReviewItem(organisation_id=alpha, content_id=item.id, queue="qa", kind="qa", status="done")
            s.add_all([ri, qi])
            s.flush()
            rd = ReviewDecision(
                item_id=ri.id,
                organisation_id=alpha,
                content_id=item.id,
                reviewer_id=first.id,
                verdict="violating",
                category=category,
            )
            s.add(rd)
            s.flush()
            rows.append(
                ReviewDecision(
                    item_id=qi.id,
                    organisation_id=alpha,
                    content_id=item.id,
                    reviewer_id=999 + i,
                    verdict="violating",
                    qa_of=rd.id,
                    agrees=agrees,
                )
            )
        s.add_all(rows)
    assert ReviewService(db, settings).agreement(alpha)["checked"] == 3
    html = people.client(app, "lead@alpha.example").get("/console/lead/qa").text
    assert 'id="tile-agreement">66.7%<' in html
    assert "r1@alpha.example" in html and "propaganda" in html and "50.0%" in html and "<svg" in html
    beta = people.client(app, "lead@beta.example").get("/console/lead/qa").text
    assert "r1@alpha.example" not in beta and "No second looks in this period." in beta


def test_queue_settings_create_delete_and_qa_share(db, app, people):
    c = people.client(app, "lead@alpha.example")
    token = _csrf(c)
    form = {
        "csrf_token": token,
        "name": "french",
        "description": "French-language posts",
        "outcomes": ["review"],
        "languages": "fr",
        "jurisdictions": "fr, be",
        "categories": ["propaganda"],
        "roles": ["reviewer", "lead"],
        "sla_minutes": "90",
    }
    r = c.post("/console/lead/queues", data=form, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/console/lead/queues?saved=queue_created"
    with db.session() as s:
        q = s.scalars(select(ReviewQueue).where(ReviewQueue.name == "french")).one()
        assert q.organisation_id == people.orgs["alpha"] and q.sla_minutes == 90
        assert q.criteria == {
            "categories": ["propaganda"],
            "jurisdictions": ["BE", "FR"],
            "languages": ["fr"],
            "outcomes": ["review"],
        }
        assert q.roles == ["reviewer", "lead"]
    page = c.get("/console/lead/queues?saved=queue_created").text
    assert 'id="saved"' in page and 'data-queue="french"' in page and "90 min" in page
    # refused input: the page again, with the code and what was typed
    r = c.post("/console/lead/queues", data={**form, "name": "Bad Name!"})
    assert r.status_code == 400 and 'data-code="invalid_queue_name"' in r.text and 'value="Bad Name!"' in r.text
    r = c.post("/console/lead/queues", data={**form, "sla_minutes": "soon"})
    assert r.status_code == 400 and 'data-code="invalid_sla"' in r.text
    r = c.post("/console/lead/queues", data=form)
    assert r.status_code == 409 and 'data-code="queue_exists"' in r.text
    # CSRF is checked centrally
    r = c.post("/console/lead/queues", data={**form, "csrf_token": "forged", "name": "other"})
    assert r.status_code == 403 and "csrf_failed" in r.text
    # another organisation's lead cannot see or delete it
    beta = people.client(app, "lead@beta.example")
    assert 'data-queue="french"' not in beta.get("/console/lead/queues").text
    r = beta.post("/console/lead/queues/french/delete", data={"csrf_token": _csrf(beta)})
    assert r.status_code == 404
    r = c.post("/console/lead/queues/french/delete", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303
    with db.session() as s:
        assert s.scalar(select(ReviewQueue.id).where(ReviewQueue.name == "french")) is None
    # QA share as a percentage
    r = c.post("/console/lead/qa-share", data={"csrf_token": token, "percent": "12.5"}, follow_redirects=False)
    assert r.status_code == 303
    with db.session() as s:
        assert s.get(Organisation, people.orgs["alpha"]).config["review"]["qa_share"] == 0.125
        assert (s.get(Organisation, people.orgs["beta"]).config or {}).get("review") is None
        actions = s.scalars(select(AuditRecord.action).where(AuditRecord.actor.like("user:%"))).all()
    assert {"review_queue_created", "review_queue_deleted", "organisation_updated"} <= set(actions)
    assert 'value="12.5"' in c.get("/console/lead/queues").text
    r = c.post("/console/lead/qa-share", data={"csrf_token": token, "percent": "150"})
    assert r.status_code == 400 and 'data-code="invalid_qa_share"' in r.text
    r = c.post("/console/lead/qa-share", data={"csrf_token": token, "percent": "lots"})
    assert r.status_code == 400 and 'data-code="invalid_qa_share"' in r.text


def test_forms_are_labelled(app, people):
    html = people.client(app, "lead@alpha.example").get("/console/lead/queues").text
    ids = set(re.findall(r'<input id="([^"]+)"', html)) | set(re.findall(r'<select id="([^"]+)"', html))
    labels = set(re.findall(r'<label for="([^"]+)"', html))
    assert ids and ids <= labels
