"""The reviewer's console pages through the HTTP layer (TestClient, real SQLite and PostgreSQL): queues, the item
view, signed media URLs, decisions (CSRF, lost leases, validation), skipping, exposure reports, preferences and
the leads' caps page."""

from __future__ import annotations

import io
import re
import time
from datetime import timedelta

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select, update

from bastion import samples
from bastion.accounts.service import AccountService
from bastion.api.app import create_app
from bastion.banks.service import BankService
from bastion.console import media
from bastion.decisions.pipeline import DecisionPipeline
from bastion.errors import NotFound
from bastion.intake.service import IntakeService, Payload, SubmissionMeta
from bastion.matching.live import LiveMatcher
from bastion.policy.service import PolicyService
from bastion.storage.models import (
    AuditRecord,
    ContentItem,
    Decision,
    ExposureRecord,
    Organisation,
    ReviewItem,
    User,
    utcnow,
)

PASSWORD = "correct horse battery"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
MEDIA_RE = re.compile(r'src="(/console/media/\d+\?exp=\d+&amp;sig=[0-9a-f]+)"')
POLICY = """
version: 1
default:
  outcome: review
  reason: Unknown content is looked at by a person.
rules:
  - name: remove-known
    when:
      any_match: {bank: ORG-known}
    outcome: remove
    reason: Matches known content.
"""


class World:
    """Two organisations (alpha, beta) with reviewers who can sign in, a bank each, and intake."""

    def __init__(self, db, settings):
        self.db, self.settings = db, settings
        accounts = AccountService(db)
        self.orgs: dict[str, int] = {}
        self.users: dict[str, int] = {}
        for org in ("alpha", "beta"):
            o = accounts.create_organisation(org)
            self.orgs[org] = o.id
            PolicyService(db).set_policy(o.id, POLICY.replace("ORG", org))
            with db.session() as s:
                s.get(Organisation, o.id).config = {"classifiers": {"semantic": False}}
            BankService(db, organisation_id=o.id).create_bank(f"{org}-known")
            for name, role in (("r1", "reviewer"), ("r2", "reviewer"), ("lead", "lead")):
                u = accounts.create_user(org, f"{name}@{org}.example", role)
                accounts.set_password(org, u.id, PASSWORD)
                self.users[f"{name}@{org}"] = u.id
        self.matcher = LiveMatcher(db, settings, refresh_seconds=0)
        self.intake = IntakeService(db, settings, DecisionPipeline(db, settings, self.matcher))

    def submit(
        self,
        org: str = "alpha",
        *,
        data: bytes | None = None,
        text: str | None = None,
        external_id: str = "post-1",
        **meta,
    ) -> dict:
        self.matcher.refresh(force=True)
        payload = Payload(data=data) if data is not None else Payload(text=text)
        item = self.intake.submit(self.orgs[org], SubmissionMeta(external_id=external_id, **meta), payload).item
        if item["status"] == "pending":  # video, PDF: decided by a worker
            from bastion.jobs.worker import Worker

            Worker(self.db, self.settings, matcher=self.matcher).run_once()
        return item


@pytest.fixture
def world(db, settings):
    w = World(db, settings)
    yield w
    w.matcher.stop_refresher()


@pytest.fixture
def app(db, settings, world):
    return create_app(db, settings)


def client_for(app, email: str) -> TestClient:
    c = TestClient(app)
    c.__enter__()
    token = CSRF_RE.search(c.get("/console/login").text).group(1)
    r = c.post(
        "/console/login", data={"csrf_token": token, "email": email, "password": PASSWORD}, follow_redirects=False
    )
    assert r.status_code == 303, r.text[:300]
    return c


@pytest.fixture
def clients(app):
    made: list[TestClient] = []

    def make(email: str) -> TestClient:
        c = client_for(app, email)
        made.append(c)
        return c

    yield make
    for c in made:
        c.__exit__(None, None, None)


def csrf(client: TestClient, path: str = "/console/queues") -> str:
    return CSRF_RE.search(client.get(path).text).group(1)


def jpeg(seed: int) -> bytes:
    return samples.encode(samples.generate_image(seed), quality=90)


def open_next(client: TestClient, queue: str | None = None):
    r = client.get("/console/next" + (f"?queue={queue}" if queue else ""), follow_redirects=False)
    assert r.status_code == 303, (r.status_code, r.text[:500])
    item_id = int(r.headers["location"].split("/items/")[1].split("?")[0])
    return item_id, client.get(r.headers["location"])


# -- queues and the item view ---------------------------------------------------------------------------------------


def test_queues_page_lists_depth_and_starts_reviewing(world, clients):
    world.submit(data=jpeg(1), uploader_id="u-1")
    world.submit(text="an ordinary post", external_id="t-1")
    r1 = clients("r1@alpha.example")
    page = r1.get("/console/queues")
    assert page.status_code == 200
    assert 'data-queue="review"' in page.text and "Start reviewing (all my queues, 2 open)" in page.text
    assert "escalation" not in page.text  # reviewers do not work the leads' queue
    item_id, view = open_next(r1, "review")
    assert view.status_code == 200 and f"Item {item_id}" in view.text
    assert 'id="decision-form"' in view.text and 'id="help"' in view.text


def test_item_view_shows_why_history_similar_and_blurred_media(world, clients, db):
    earlier = world.submit(text="an earlier post", external_id="t-0", uploader_id="u-1")
    first = world.submit(data=jpeg(2), external_id="p-1", uploader_id="u-1")
    same = world.submit(data=jpeg(2), external_id="p-2", uploader_id="u-2")  # the same file again
    r1 = clients("r1@alpha.example")
    view = r1.get(f"/console/items/{_item_of(db, same['id'])}")
    assert view.status_code == 200
    text = view.text
    assert 'id="priority-parts"' in text and "severity" in text and "reach" in text
    assert 'id="rule">default' in text and 'id="policy-version">1' in text
    assert 'class="wb-media wb-grey"' in text and 'data-blur="16"' in text  # blurred and greyscale by default
    assert 'id="similar"' in text and "same file (sha256)" in text and str(first["id"]) in text
    other = r1.get(f"/console/items/{_item_of(db, first['id'])}")
    assert 'id="uploader-history"' in other.text and "t-0" in other.text and str(earlier["id"]) in other.text
    assert "script-src 'self'" in view.headers["content-security-policy"]
    assert "<script>" not in text and "style=" not in text  # no inline script or style (CSP)


def _item_of(db, content_id: int) -> int:
    with db.session() as s:
        return s.scalar(select(ReviewItem.id).where(ReviewItem.content_id == content_id))


def test_text_and_pdf_items_show_their_text(world, clients, db):
    world.submit(text="an ordinary <b>post</b> about gardening", external_id="t-1")
    r1 = clients("r1@alpha.example")
    _, view = open_next(r1)
    assert 'id="content-text"' in view.text and "an ordinary &lt;b&gt;post&lt;/b&gt; about gardening" in view.text


def test_an_item_another_reviewer_holds_is_a_clear_409_page(world, clients, db):
    world.submit(text="an ordinary post", external_id="t-1")
    item_id, _ = open_next(clients("r1@alpha.example"))
    r = clients("r2@alpha.example").get(f"/console/items/{item_id}")
    assert r.status_code == 409 and 'data-code="item_leased"' in r.text
    assert "another reviewer is working on this item" in r.text


def test_another_organisations_item_is_not_found_and_gets_no_media(world, clients, db):
    world.submit(data=jpeg(3), external_id="p-1")
    alpha = clients("r1@alpha.example")
    item_id, view = open_next(alpha)
    url = MEDIA_RE.search(view.text).group(1).replace("&amp;", "&")
    beta = clients("r1@beta.example")
    r = beta.get(f"/console/items/{item_id}")
    assert r.status_code == 404 and "review_item_not_found" in r.text and "wb-media" not in r.text
    r = beta.get(url)
    assert r.status_code == 404 and not r.content.startswith(b"\xff\xd8")


# -- media ----------------------------------------------------------------------------------------------------------


def test_media_is_served_through_signed_expiring_urls_for_one_user(world, clients, db, settings):
    world.submit(data=jpeg(4), external_id="p-1")
    r1 = clients("r1@alpha.example")
    item_id, view = open_next(r1)
    url = MEDIA_RE.search(view.text).group(1).replace("&amp;", "&")
    got = r1.get(url)
    assert got.status_code == 200 and got.content.startswith(b"\xff\xd8")
    assert got.headers["content-type"] == "image/jpeg" and got.headers["x-content-type-options"] == "nosniff"
    assert got.headers["content-disposition"] == "inline"
    ranged = r1.get(url, headers={"Range": "bytes=0-9"})
    assert ranged.status_code == 206 and len(ranged.content) == 10
    # another reviewer of the same organisation: the URL was not made for them
    r2 = clients("r2@alpha.example")
    bad = r2.get(url)
    assert bad.status_code == 403 and "media_url_invalid" in bad.text
    # tampered, unsigned, expired
    assert r1.get(url[:-4] + "0000").status_code == 403
    assert r1.get(f"/console/media/{item_id}").status_code == 403
    with db.session() as s:
        content_id = s.get(ReviewItem, item_id).content_id
    user_id = world.users["r1@alpha"]
    expired = media.media_url(settings, item_id, content_id, user_id, now=time.time() - 3600, seconds=60)
    r = r1.get(expired)
    assert r.status_code == 403 and "media_url_invalid" in r.text and "expired" in r.text
    fresh = media.media_url(settings, item_id, content_id, user_id)
    assert r1.get(fresh).status_code == 200
    # signed for another item: refused
    assert r1.get(fresh.replace(f"/media/{item_id}?", f"/media/{item_id + 1000}?")).status_code == 404


@pytest.mark.parametrize(
    ("media_type", "expected_type", "disposition"),
    [
        ("image/svg+xml", "text/plain; charset=utf-8", "attachment"),
        ("text/html", "text/plain; charset=utf-8", "attachment"),
        ("application/xhtml+xml", "text/plain; charset=utf-8", "attachment"),
        ("text/plain", "text/plain; charset=utf-8", "attachment"),
        ("application/zip", "application/zip", "attachment"),
        (None, "application/octet-stream", "attachment"),
        ("image/png", "image/png", "inline"),
        ("video/mp4", "video/mp4", "inline"),
        ("audio/mpeg", "audio/mpeg", "inline"),
        ("application/pdf", "application/pdf", "inline"),
    ],
)
def test_media_headers_never_render_active_content_inline(media_type, expected_type, disposition):
    mime, headers = media.response_headers(media_type, 7)
    assert mime == expected_type and headers["Content-Disposition"].startswith(disposition)
    assert headers["X-Content-Type-Options"] == "nosniff" and "sandbox" in headers["Content-Security-Policy"]


def test_uploaded_svg_and_html_are_never_served_inline(world, clients, db):
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    world.submit(data=svg, external_id="svg-1")
    r1 = clients("r1@alpha.example")
    item_id, view = open_next(r1)
    assert "<svg" not in view.text and "&lt;svg" in view.text  # shown as escaped text, never markup
    with db.session() as s:
        content_id = s.get(ReviewItem, item_id).content_id
    url = media.media_url(r1.app.state.settings, item_id, content_id, world.users["r1@alpha"])
    for stored in ("image/svg+xml", "text/html"):
        with db.session() as s:
            s.get(ContentItem, content_id).media_type = stored
        got = r1.get(url)
        assert got.status_code == 200 and got.headers["content-type"] == "text/plain; charset=utf-8"
        assert got.headers["content-disposition"].startswith("attachment")
        assert got.headers["x-content-type-options"] == "nosniff"


# -- deciding -------------------------------------------------------------------------------------------------------


def test_a_violating_decision_through_the_form_banks_and_goes_to_the_next_item(world, clients, db):
    world.submit(data=jpeg(5), external_id="p-1")
    world.submit(text="another ordinary post", external_id="t-2")
    r1 = clients("r1@alpha.example")
    item_id, view = open_next(r1, "review")
    token = CSRF_RE.search(view.text).group(1)
    with db.session() as s:
        content_id = s.get(ReviewItem, item_id).content_id
    missing = r1.post(f"/console/items/{item_id}/decide", data={"csrf_token": token, "verdict": "violating"})
    assert missing.status_code == 400 and 'data-code="category_required"' in missing.text
    other_bank = r1.post(
        f"/console/items/{item_id}/decide",
        data={
            "csrf_token": token,
            "verdict": "violating",
            "category": "propaganda",
            "policy_reference": "TOS 4.2",
            "add_to_bank": "1",
            "bank": "beta-known",
        },
    )
    assert other_bank.status_code == 400 and 'data-code="bank_not_found"' in other_bank.text
    r = r1.post(
        f"/console/items/{item_id}/decide",
        follow_redirects=False,
        data={
            "csrf_token": token,
            "verdict": "violating",
            "category": "propaganda",
            "policy_reference": "TOS 4.2",
            "action": "remove",
            "add_to_bank": "1",
            "bank": "alpha-known",
            "share_with_forum": "1",
            "note": "sample",
            "from_queue": "review",
        },
    )
    assert r.status_code == 303 and r.headers["location"].startswith("/console/next?")
    nxt = r1.get(r.headers["location"], follow_redirects=False)
    assert nxt.status_code == 303 and "/console/items/" in nxt.headers["location"]
    assert f"Item {item_id} decided." in r1.get(nxt.headers["location"]).text
    with db.session() as s:
        latest = s.scalars(
            select(Decision).where(Decision.content_id == content_id).order_by(Decision.version.desc())
        ).first()
        assert latest.outcome == "remove" and latest.automated is False
    again = world.submit(
        data=samples.encode(samples.generate_image(5).resize((500, 375)), quality=70), external_id="p-2"
    )
    assert again["decision"]["outcome"] == "remove"


def test_the_decision_form_needs_the_csrf_token(world, clients, db):
    world.submit(text="an ordinary post", external_id="t-1")
    r1 = clients("r1@alpha.example")
    item_id, _ = open_next(r1)
    for data in ({"verdict": "not_violating"}, {"verdict": "not_violating", "csrf_token": "forged" * 6}):
        r = r1.post(f"/console/items/{item_id}/decide", data=data)
        assert r.status_code == 403 and "csrf_failed" in r.text
    with db.session() as s:
        assert s.get(ReviewItem, item_id).status == "leased"  # nothing decided
    for path in (
        f"/console/items/{item_id}/release",
        f"/console/items/{item_id}/renew",
        "/console/exposure",
        "/console/preferences",
    ):
        assert r1.post(path, data={"seconds": "1"}).status_code == 403


def test_a_decision_after_the_lease_was_lost_is_refused_and_writes_nothing(world, clients, db):
    world.submit(text="an ordinary post", external_id="t-1")
    r1, r2 = clients("r1@alpha.example"), clients("r2@alpha.example")
    item_id, view = open_next(r1)
    token = CSRF_RE.search(view.text).group(1)
    with db.session() as s:
        s.execute(update(ReviewItem).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
    r = r1.post(f"/console/items/{item_id}/renew", headers={"X-CSRF-Token": token, "Accept": "application/json"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "lease_lost"
    taken, _ = open_next(r2)
    assert taken == item_id
    r = r1.post(f"/console/items/{item_id}/decide", data={"csrf_token": token, "verdict": "not_violating"})
    assert r.status_code == 409 and 'data-code="lease_lost"' in r.text and "Your lease on this item was lost" in r.text
    with db.session() as s:
        assert s.scalars(select(Decision).where(Decision.automated.is_(False))).all() == []
        assert s.get(ReviewItem, item_id).leased_by == world.users["r2@alpha"]


def test_renew_and_skip(world, clients, db):
    world.submit(text="an ordinary post", external_id="t-1")
    r1 = clients("r1@alpha.example")
    item_id, view = open_next(r1)
    token = CSRF_RE.search(view.text).group(1)
    r = r1.post(f"/console/items/{item_id}/renew", headers={"X-CSRF-Token": token, "Accept": "application/json"})
    assert r.status_code == 200 and r.json()["item_id"] == item_id
    r = r1.post(f"/console/items/{item_id}/release", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/console/queues?notice=skipped"
    with db.session() as s:
        assert s.get(ReviewItem, item_id).status == "open"


def test_graphic_categories_show_a_warning_first(world, clients, db):
    world.submit(text="an ordinary post", external_id="t-1")
    with db.session() as s:
        s.execute(update(ReviewItem).values(category="graphic_violence"))
    r1 = clients("r1@alpha.example")
    item_id, warning = open_next(r1)
    assert 'id="graphic-warning"' in warning.text and 'data-category="graphic_violence"' in warning.text
    assert 'id="decision-form"' not in warning.text
    assert 'id="decision-form"' in r1.get(f"/console/items/{item_id}?warned=1").text


def test_an_appeal_overturned_in_the_console_reinstates(world, clients, db):
    from bastion.review import ReviewService

    submitted = world.submit(data=jpeg(6), external_id="p-1", uploader_id="u-1")
    r1 = clients("r1@alpha.example")
    item_id, view = open_next(r1)
    token = CSRF_RE.search(view.text).group(1)
    r1.post(
        f"/console/items/{item_id}/decide",
        data={
            "csrf_token": token,
            "verdict": "violating",
            "category": "propaganda",
            "policy_reference": "TOS 4",
            "add_to_bank": "1",
            "bank": "alpha-known",
        },
    )
    ReviewService(db, world.settings).create_appeal("api", world.orgs["alpha"], submitted["id"], reason="news")
    assert r1.get("/console/next", follow_redirects=False).headers["location"] == "/console/queues?notice=empty"
    lead = clients("lead@alpha.example")
    page = lead.get("/console/lead/appeals?status=open").text
    assert 'data-status="open"' in page and "waiting in the queue" in page and "by r1@alpha.example" in page
    r2 = clients("r2@alpha.example")
    assert r2.get("/console/lead/appeals").status_code == 403  # leads only
    appeal_item, view = open_next(r2)
    assert 'id="v-overturn"' in view.text and "news" in view.text
    assert "being decided by r2@alpha.example" in lead.get("/console/lead/appeals").text
    token = CSRF_RE.search(view.text).group(1)
    r = r2.post(
        f"/console/items/{appeal_item}/decide",
        follow_redirects=False,
        data={"csrf_token": token, "verdict": "overturn", "disable_bank_entries": "1"},
    )
    assert r.status_code == 303
    with db.session() as s:
        latest = s.scalars(
            select(Decision).where(Decision.content_id == submitted["id"]).order_by(Decision.version.desc())
        ).first()
        assert latest.outcome == "allow"
    page = lead.get("/console/lead/appeals").text
    assert 'data-status="overturned"' in page and 'id="tile-overturned">1<' in page and "r2@alpha.example" in page
    assert 'id="no-appeals"' in lead.get("/console/lead/appeals?status=open").text
    assert 'data-appeal' not in clients("lead@beta.example").get("/console/lead/appeals").text  # other organisation


# -- wellbeing ------------------------------------------------------------------------------------------------------


def test_exposure_reports_and_the_daily_cap_stop_next_item(world, clients, db):
    world.submit(text="first ordinary post", external_id="t-1")
    world.submit(text="second ordinary post", external_id="t-2")
    lead = clients("lead@alpha.example")
    token = csrf(lead, "/console/caps")
    r1_id = world.users["r1@alpha"]
    r = lead.post(f"/console/caps/{r1_id}", data={"csrf_token": token, "minutes": "1"})
    assert r.status_code == 200 and 'id="saved"' in r.text
    assert lead.post(f"/console/caps/{r1_id}", data={"csrf_token": token, "minutes": "0"}).status_code == 400
    r1 = clients("r1@alpha.example")
    assert r1.get("/console/caps").status_code == 403  # leads only
    item_id, view = open_next(r1)
    token = CSRF_RE.search(view.text).group(1)
    r = r1.post(
        "/console/exposure",
        headers={"X-CSRF-Token": token},
        data={"item_id": str(item_id), "seconds": "45", "revealed_seconds": "20"},
    )
    assert r.status_code == 200 and r.json()["cap_reached"] is False
    bad = r1.post(
        "/console/exposure",
        headers={"X-CSRF-Token": token, "Accept": "application/json"},
        data={"item_id": str(item_id), "seconds": "5", "revealed_seconds": "9"},
    )
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_exposure"
    r = r1.post(
        "/console/exposure",
        headers={"X-CSRF-Token": token},
        data={"item_id": str(item_id), "seconds": "15", "revealed_seconds": "0"},
    )
    assert r.json()["cap_reached"] is True and r.json()["seconds"] == 60
    r1.post(f"/console/items/{item_id}/decide", data={"csrf_token": token, "verdict": "not_violating"})
    refused = r1.get("/console/next")
    assert refused.status_code == 403 and 'data-code="daily_cap_reached"' in refused.text
    assert 'data-code="daily_cap_reached"' in r1.get("/console/queues").text
    with db.session() as s:
        rows = s.scalars(select(ExposureRecord).where(ExposureRecord.user_id == r1_id)).all()
        assert sum(r.seconds for r in rows) == 60 and sum(r.revealed_seconds for r in rows) == 20
        assert "daily_cap_set" in set(s.scalars(select(AuditRecord.action)))
    # another reviewer is not capped
    assert clients("r2@alpha.example").get("/console/next", follow_redirects=False).status_code == 303


def test_preferences_are_saved_and_change_the_item_view(world, clients, db):
    world.submit(data=jpeg(7), external_id="p-1")
    r1 = clients("r1@alpha.example")
    page = r1.get("/console/preferences")
    assert page.status_code == 200 and 'name="blur"' in page.text
    token = CSRF_RE.search(page.text).group(1)
    r = r1.post(
        "/console/preferences", data={"csrf_token": token, "blur": "30", "autoplay": "1", "break_minutes": "20"}
    )
    assert r.status_code == 200 and 'id="saved"' in r.text
    with db.session() as s:
        prefs = s.get(User, world.users["r1@alpha"]).preferences
    assert prefs == {"blur": 30, "greyscale": False, "autoplay": True, "break_minutes": 20}
    bad = r1.post("/console/preferences", data={"csrf_token": token, "blur": "99", "break_minutes": "20"})
    assert bad.status_code == 400 and 'data-code="invalid_preference"' in bad.text
    _, view = open_next(r1)
    assert 'data-blur="30"' in view.text and 'class="wb-media"' in view.text and 'data-break-minutes="20"' in view.text


def _text_pdf(text: str) -> bytes:
    content = b"BT /F1 11 Tf 50 750 Td (" + text.encode("latin-1") + b") Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
        b"/Contents 5 0 R >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
    ]
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def test_a_pdf_item_shows_blurred_page_images_and_its_text(world, clients):
    world.submit(data=_text_pdf("A harmless leaflet about the village fete"), external_id="pdf-1")
    r1 = clients("r1@alpha.example")
    item_id, view = open_next(r1)
    assert 'class="wb-media wb-pages' in view.text and 'id="pdf-note"' not in view.text
    assert "A harmless leaflet about the village fete" in view.text  # the text too, for screen readers
    pages = re.findall(r'<img class="pdf-page" src="([^"]+)"', view.text)
    assert len(pages) == 1 and f"/console/media/{item_id}/pdf/1?" in pages[0]
    r = r1.get(pages[0].replace("&amp;", "&"))
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.headers["x-content-type-options"] == "nosniff"
    page = Image.open(io.BytesIO(r.content))
    assert page.width == 1000 and page.height > page.width  # a portrait page at the console's width
    ink = int((np.asarray(page.convert("L")) < 128).sum())
    assert ink > 50  # the leaflet's text is on the page, not a blank image
    missing = r1.get(pages[0].replace("&amp;", "&").replace("/pdf/1?", "/pdf/2?"))
    assert missing.status_code == 404 and "pdf_page_not_found" in missing.text
    forged = r1.get(re.sub(r"sig=[0-9a-f]+", "sig=" + "0" * 64, pages[0].replace("&amp;", "&")))
    assert forged.status_code == 403 and "media_url_invalid" in forged.text
    r2 = clients("r2@alpha.example")  # the signature is per user
    assert r2.get(pages[0].replace("&amp;", "&")).status_code == 403


def test_pdf_pages_refuse_broken_files_and_bound_huge_pages():
    from bastion.console import pdf_pages

    with pytest.raises(pdf_pages.PdfUnreadable):
        pdf_pages.render_page(b"%PDF-1.7\nnot really a pdf", 1)
    huge = _text_pdf("wide").replace(b"/MediaBox [0 0 612 792]", b"/MediaBox [0 0 200000 200000]")
    png = Image.open(io.BytesIO(pdf_pages.render_page(huge, 1)))
    assert png.width * png.height <= pdf_pages.MAX_PIXELS
    with pytest.raises(NotFound):
        pdf_pages.render_page(_text_pdf("x"), pdf_pages.MAX_PAGES + 1)


def test_video_is_muted_and_autoplays_only_by_preference(world, clients, db, tmp_path):
    samples.generate_video(tmp_path / "v.mp4", seconds=2.0, fps=10, size=(160, 120), seed=3)
    world.submit(data=(tmp_path / "v.mp4").read_bytes(), external_id="vid-1")
    r1 = clients("r1@alpha.example")
    item_id, view = open_next(r1)
    tag = re.search(r"<video[^>]*>", view.text).group(0)
    assert "muted" in tag and "autoplay" not in tag and 'class="wb-media wb-grey"' in view.text
    url = MEDIA_RE.search(view.text).group(1).replace("&amp;", "&")
    got = r1.get(url)
    assert got.headers["content-type"] == "video/mp4" and got.headers["content-disposition"] == "inline"
    with db.session() as s:
        s.get(User, world.users["r1@alpha"]).preferences = {"autoplay": True}
    tag = re.search(r"<video[^>]*>", r1.get(f"/console/items/{item_id}").text).group(0)
    assert "autoplay" in tag and "muted" in tag


def test_own_decision_under_appeal_is_403_and_a_deadline_shows_a_countdown(world, clients, db):
    from bastion.review import ReviewService

    submitted = world.submit(text="an ordinary post", external_id="t-1")
    r1 = clients("r1@alpha.example")
    item_id, view = open_next(r1)
    token = CSRF_RE.search(view.text).group(1)
    r1.post(
        f"/console/items/{item_id}/decide",
        data={"csrf_token": token, "verdict": "violating", "category": "recruitment", "policy_reference": "TOS 4"},
    )
    ReviewService(db, world.settings).create_appeal("api", world.orgs["alpha"], submitted["id"])
    with db.session() as s:
        appeal_item = s.scalar(select(ReviewItem.id).where(ReviewItem.kind == "appeal"))
        s.execute(
            update(ReviewItem).where(ReviewItem.id == appeal_item).values(deadline_at=utcnow() + timedelta(hours=2))
        )
    r = r1.get(f"/console/items/{appeal_item}")
    assert r.status_code == 403 and 'data-code="own_decision"' in r.text
    view = clients("r2@alpha.example").get(f"/console/items/{appeal_item}")
    assert view.status_code == 200 and 'id="deadline"' in view.text and "left" in view.text
    assert re.search(r'data-seconds="(\d+)"', view.text) and 'data-deadline="' in view.text
    done = r1.get(f"/console/items/{item_id}")
    assert done.status_code == 409 and 'data-code="already_decided"' in done.text
