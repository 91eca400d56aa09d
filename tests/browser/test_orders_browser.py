"""Orders in a real browser (Debian Chromium through Playwright): a lead sees the countdown and answers "cannot
comply"; the authority's person sees it, clarifies; the lead removes the content and both see the confirmation."""

from __future__ import annotations

import hashlib
import re

import pytest

from bastion.accounts.service import AccountService
from bastion.compliance.authorities import AuthorityService
from bastion.compliance.orders import OrderService, set_mode
from bastion.storage.models import ContentItem

PASSWORD = "correct horse battery"
pytestmark = pytest.mark.parametrize("db", ["sqlite"], indirect=True)  # the browser is the subject, not the database


@pytest.fixture
def order_id(db, settings) -> int:
    accounts = AccountService(db)
    acme = accounts.create_organisation("acme").id
    set_mode(db, "acme", "review", actor="test")
    with db.session() as s:
        md5 = hashlib.md5(b"post-1").hexdigest()
        s.add(
            ContentItem(
                organisation_id=acme,
                external_id="post-1",
                source="upload",
                status="decided",
                signals=[{"type": "md5", "value": md5}],
                content_type="image",
            )
        )
    AuthorityService(db).create("bka", "competent_authority", "DE")
    AuthorityService(db).accept("bka", "acme")
    for org, email, role in (("acme", "lee@acme.example", "lead"), ("bka", "ida@bka.example", "authority")):
        user = accounts.create_user(org, email, role)
        accounts.set_password(org, user.id, PASSWORD)
    order = {
        "platform": "acme",
        "kind": "removal_order",
        "reference": "BKA-7",
        "issuer": "BKA ST 14",
        "member_state": "DE",
        "legal_basis": "Regulation (EU) 2021/784, Art. 3",
        "reasons": "Terrorist content",
        "issued_at": "2026-01-05T09:00:00Z",
        "content": [{"content_id": "post-1"}],
    }
    return OrderService(db, settings).receive(accounts.get_organisation("bka").id, order, actor="test")["id"]


def _sign_in(page, live_server: str, email: str) -> None:  # noqa: ANN001 - a playwright Page
    page.goto(f"{live_server}/console/login")
    page.get_by_label("E-mail address").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live_server}/console/")


def test_cannot_comply_clarified_and_executed_through_both_views(live_server, browser, order_id):
    lead = browser.new_context().new_page()
    authority = browser.new_context().new_page()
    errors: list[str] = []
    for p in (lead, authority):
        p.set_default_timeout(15_000)
        p.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

    # The lead: the order is on the list with a live countdown, and is answered "cannot comply".
    _sign_in(lead, live_server, "lee@acme.example")
    lead.get_by_role("link", name="Orders").click()
    row = lead.locator(f'tr[data-order="{order_id}"]')
    countdown = row.locator(".countdown")
    assert re.fullmatch(r"(59|60) min \d\d s left", countdown.inner_text())
    first = countdown.inner_text()
    lead.wait_for_function("t => document.querySelector('.countdown').textContent !== t", arg=first)
    row.get_by_role("link", name="BKA-7").click()
    lead.get_by_label("Cannot comply because").select_option("insufficient_information")
    lead.get_by_label("Explanation for the authority").fill("Which post? post-1 was deleted by its author.")
    lead.get_by_role("button", name='Send "cannot comply"').click()
    assert "clock is stopped" in lead.get_by_role("status").inner_text()
    assert lead.locator("#order-status").get_attribute("data-status") == "cannot_comply"
    assert "stopped" in lead.locator("#order-clock").inner_text()

    # The authority's person: sees the answer, clarifies; the hour starts again.
    _sign_in(authority, live_server, "ida@bka.example")
    assert authority.get_by_role("link", name="Queues").count() == 0  # no platform pages for an authority
    authority.get_by_role("link", name="Orders").click()
    assert authority.locator(f'tr[data-order="{order_id}"]').get_attribute("data-status") == "cannot_comply"
    authority.get_by_role("link", name="BKA-7").click()
    assert "post-1 was deleted" in authority.locator("#order-cannot-comply").inner_text()
    authority.get_by_label("Clarification").fill("The copy at post-1 is still served from your CDN.")
    authority.get_by_role("button", name="Send clarification").click()
    assert "starts again" in authority.get_by_role("status").inner_text()
    assert authority.locator("#order-status").get_attribute("data-status") == "pending_review"
    assert re.search(r"\d+ min \d\d s left", authority.locator("#deadline").inner_text())
    assert authority.get_by_role("button", name="Remove the content").count() == 0  # the platform's to do

    # The lead removes the content; both see the confirmation.
    lead.reload()
    assert "still served" in lead.locator("#order-clarification").inner_text()
    lead.get_by_role("button", name="Remove the content").click()
    assert "hashes banked" in lead.get_by_role("status").inner_text()
    assert lead.locator("#order-status").get_attribute("data-status") == "executed"
    assert "within the deadline" in lead.locator("#order-confirmed").inner_text()
    authority.reload()
    assert authority.locator("#order-status").get_attribute("data-status") == "executed"
    assert authority.locator("#order-confirmed").is_visible()
    assert "removed" in authority.locator("#order-content").inner_text()

    assert not [e for e in errors if "Content Security Policy" in e or "Refused" in e], errors
    lead.context.close()
    authority.context.close()


def test_the_lead_sees_escalations(live_server, page, db, order_id):
    _sign_in(page, live_server, "lee@acme.example")
    page.get_by_role("link", name="Escalations").click()
    assert page.locator("#no-escalations").is_visible()
    r = page.goto(f"{live_server}/console/orders/999999")
    assert r.status == 404
