"""The reviewer's console in a real browser (Debian Chromium through Playwright): queues, the item view blurred
and greyscale by default and revealed on demand, a violating decision that banks the hash (a re-upload is then
removed automatically), an appeal overturned by a second reviewer, and another organisation's reviewer kept out.

Set ``BASTION_SCREENSHOTS=docs/screenshots`` to save PNGs of the main screens while these tests run (generated,
benign sample images only).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import select

from bastion import samples
from bastion.accounts.service import AccountService
from bastion.banks.service import BankService
from bastion.decisions.pipeline import DecisionPipeline
from bastion.intake.service import IntakeService, Payload, SubmissionMeta
from bastion.matching.live import LiveMatcher
from bastion.policy.service import PolicyService
from bastion.review import Reviewer, ReviewService
from bastion.storage.models import Decision, Event, Organisation, ReviewItem

PASSWORD = "correct horse battery"
SCREENSHOTS = os.environ.get("BASTION_SCREENSHOTS", "").strip()  # read at import: the autouse fixture clears BASTION_*
pytestmark = pytest.mark.parametrize("db", ["sqlite"], indirect=True)  # the browser is the subject, not the database
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
    def __init__(self, db, settings):
        self.db, self.settings = db, settings
        accounts = AccountService(db)
        self.orgs: dict[str, int] = {}
        self.people: dict[str, Reviewer] = {}
        for org in ("alpha", "beta"):
            o = accounts.create_organisation(org)
            self.orgs[org] = o.id
            PolicyService(db).set_policy(o.id, POLICY.replace("ORG", org))
            with db.session() as s:
                s.get(Organisation, o.id).config = {"classifiers": {"semantic": False}}
            BankService(db, organisation_id=o.id).create_bank(f"{org}-known")
            for name, role in (("r1", "reviewer"), ("r2", "reviewer")):
                u = accounts.create_user(org, f"{name}@{org}.example", role)
                accounts.set_password(org, u.id, PASSWORD)
                self.people[f"{name}@{org}"] = Reviewer(u.id, o.id, role, u.email)
        self.matcher = LiveMatcher(db, settings, refresh_seconds=0)
        self.intake = IntakeService(db, settings, DecisionPipeline(db, settings, self.matcher))
        self.review = ReviewService(db, settings)

    def submit_image(self, seed: int, external_id: str, org: str = "alpha", size=None, quality: int = 90, **meta):
        img = samples.generate_image(seed)
        if size:
            img = img.resize(size)
        self.matcher.refresh(force=True)
        return self.intake.submit(
            self.orgs[org],
            SubmissionMeta(external_id=external_id, **meta),
            Payload(data=samples.encode(img, quality=quality)),
        ).item


@pytest.fixture
def world(db, settings):
    w = World(db, settings)
    yield w
    w.matcher.stop_refresher()


def shot(page, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=False)


def sign_in(page, base: str, email: str) -> None:
    page.goto(f"{base}/console/login")
    page.get_by_label("E-mail address").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/console/")


def media_filter(page) -> str:
    return page.evaluate("getComputedStyle(document.getElementById('media-el')).filter")


def test_queue_to_item_blurred_greyscale_and_reveal(live_server, page, world):
    world.submit_image(11, "post-1", uploader_id="u-1")
    world.submit_image(12, "post-2", uploader_id="u-1")
    page.set_viewport_size({"width": 1280, "height": 900})
    sign_in(page, live_server, "r1@alpha.example")
    page.get_by_role("link", name="Queues").click()
    page.wait_for_url(f"{live_server}/console/queues")
    assert page.locator('tr[data-queue="review"] td').first.inner_text() == "2"
    shot(page, "queues")
    page.get_by_role("link", name="Start reviewing queue review").click()
    page.wait_for_selector("#media-el")
    page.wait_for_function("document.getElementById('media-el').complete")
    style = media_filter(page)
    assert "blur(16px)" in style and "grayscale(1)" in style, style
    shot(page, "item-blurred")
    page.get_by_role("button", name="Reveal", exact=True).click()
    assert media_filter(page) == "none"
    assert page.get_by_role("button", name="Hide", exact=True).get_attribute("aria-pressed") == "true"
    shot(page, "item-revealed")
    page.keyboard.press("r")  # the shortcut hides it again
    assert "blur(16px)" in media_filter(page)
    page.keyboard.down("h")  # reveal while held
    assert media_filter(page) == "none"
    page.keyboard.up("h")
    assert "blur(" in media_filter(page)
    page.locator("#sec-decide").scroll_into_view_if_needed()
    shot(page, "decision-form")
    page.keyboard.press("?")
    assert page.get_by_role("dialog", name="Keyboard shortcuts").is_visible()
    page.keyboard.press("v")  # ignored while the help is open
    shot(page, "decision-form-shortcuts")
    page.keyboard.press("Escape")
    assert not page.locator("#help").is_visible()
    assert page.locator("#v-violating").is_checked() is False


def test_keyboard_violating_decision_banks_and_a_reupload_is_removed(live_server, page, world, db):
    first = world.submit_image(21, "post-1", uploader_id="u-9")
    sign_in(page, live_server, "r1@alpha.example")
    page.goto(f"{live_server}/console/next")
    page.wait_for_selector("#decision-form")
    page.keyboard.press("v")  # violating: focus moves to the category
    assert page.evaluate("document.activeElement.id") == "category"
    page.select_option("#category", "branded_publication")
    page.keyboard.press("Tab")
    page.keyboard.type("TOS 4.2 terrorist content")
    page.keyboard.press("Escape")  # leave the field so shortcuts work again
    page.keyboard.press("b")
    assert page.locator("#add-to-bank").is_checked()
    page.check("#share-with-forum")
    page.keyboard.press("Escape")
    page.keyboard.press("d")
    page.wait_for_url(f"{live_server}/console/queues?notice=empty")
    assert "nothing to review" in page.locator("#queues-notice").inner_text()
    with db.session() as s:
        latest = s.scalars(
            select(Decision).where(Decision.content_id == first["id"]).order_by(Decision.version.desc())
        ).first()
        assert latest.outcome == "remove" and latest.actor == "user:r1@alpha.example"
    again = world.submit_image(21, "post-2", size=(500, 375), quality=70)  # an altered copy
    assert again["decision"]["outcome"] == "remove" and again["decision"]["rule"] == "remove-known"


def test_an_appeal_overturned_by_a_second_reviewer_reinstates(live_server, page, world, db):
    submitted = world.submit_image(31, "post-1", uploader_id="u-1")
    r1 = world.people["r1@alpha"]
    item = world.review.next_item(r1)
    out = world.review.decide(
        r1, item.id, "violating", category="propaganda", policy_reference="TOS 4", bank="alpha-known"
    )
    world.review.create_appeal("api", world.orgs["alpha"], submitted["id"], reason="it is a news report")
    sign_in(page, live_server, "r2@alpha.example")
    page.goto(f"{live_server}/console/next")
    page.wait_for_selector("#v-overturn")
    assert "it is a news report" in page.locator("#sec-appeal").inner_text()
    page.keyboard.press("o")
    page.get_by_label("Also disable this organisation's bank entries that caused the decision").check()
    page.get_by_role("button", name="Submit decision").click()
    page.wait_for_url(f"{live_server}/console/queues?notice=empty")
    with db.session() as s:
        latest = s.scalars(
            select(Decision).where(Decision.content_id == submitted["id"]).order_by(Decision.version.desc())
        ).first()
        assert latest.outcome == "allow" and latest.actor == "user:r2@alpha.example"
        changed = s.scalars(select(Event).where(Event.type == "decision.changed").order_by(Event.id.desc())).first()
        assert changed.payload["reinstated"] is True and changed.payload["decision"]["outcome"] == "allow"
        from bastion.storage.models import BankEntry

        assert s.get(BankEntry, out["bank_entry"]["entry_id"]).enabled is False


def test_another_organisations_reviewer_gets_not_found_and_no_media(live_server, page, world, db):
    world.submit_image(41, "post-1")
    item = world.review.next_item(world.people["r2@alpha"])
    media_requests: list[str] = []
    page.on("request", lambda r: media_requests.append(r.url) if "/console/media/" in r.url else None)
    sign_in(page, live_server, "r1@beta.example")
    response = page.goto(f"{live_server}/console/items/{item.id}")
    assert response.status == 404
    assert page.get_by_role("heading", name="Not found").is_visible()
    assert page.locator("img, video, audio").count() == 0 and media_requests == []
    with db.session() as s:
        assert s.get(ReviewItem, item.id).leased_by == world.people["r2@alpha"].user_id  # untouched


def test_a_lost_lease_is_shown_at_once_and_the_decision_is_refused(live_server, page, world, db):
    from datetime import timedelta

    from sqlalchemy import update

    from bastion.storage.models import utcnow

    world.submit_image(51, "post-1")
    sign_in(page, live_server, "r1@alpha.example")
    page.goto(f"{live_server}/console/next")
    page.wait_for_selector("#decision-form")
    with db.session() as s:
        s.execute(update(ReviewItem).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
    taken = world.review.next_item(world.people["r2@alpha"])
    page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")  # renews at once when the tab is shown
    alert = page.locator("#lease-alert")
    alert.wait_for(state="visible")
    assert alert.get_attribute("data-code") == "lease_lost" and "lease" in alert.inner_text()
    page.keyboard.press("n")
    page.keyboard.press("d")
    page.wait_for_selector("#review-message")
    assert page.locator("#review-message").get_attribute("data-code") == "lease_lost"
    with db.session() as s:
        row = s.get(ReviewItem, taken.id)
        assert row.status == "leased" and row.leased_by == world.people["r2@alpha"].user_id
        assert s.scalars(select(Decision).where(Decision.automated.is_(False))).all() == []
