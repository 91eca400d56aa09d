"""The compliance pages in a real browser (Debian Chromium through Playwright): the transparency report's charts
draw under the console's Content-Security-Policy with no violation, and an admin sets the turnover with the
keyboard alone and sees the penalties."""

from __future__ import annotations

import pytest

from bastion.accounts.service import AccountService
from bastion.storage.models import ContentItem, Decision, utcnow

PASSWORD = "correct horse battery"
pytestmark = pytest.mark.parametrize("db", ["sqlite"], indirect=True)  # the browser is the subject, not the database


@pytest.fixture
def admin(db) -> str:
    svc = AccountService(db)
    org = svc.create_organisation("acme")
    user = svc.create_user("acme", "ada@acme.example", "admin")
    svc.set_password("acme", user.id, PASSWORD)
    with db.session() as s:
        for i in range(3):
            item = ContentItem(
                organisation_id=org.id,
                external_id=f"p{i}",
                source="upload",
                content_type="image",
                status="decided",
                signals=[],
                jurisdictions=["FR"],
                created_at=utcnow(),
            )
            s.add(item)
            s.flush()
            s.add(
                Decision(
                    content_id=item.id,
                    organisation_id=org.id,
                    version=1,
                    outcome="remove",
                    automated=True,
                    reason="known",
                    evidence={"matches": [{"bank": "b", "entry_id": i}]},
                )
            )
    return user.email


def _sign_in(page, live_server: str, email: str) -> None:  # noqa: ANN001 - a playwright Page
    page.goto(f"{live_server}/console/login")
    page.get_by_label("E-mail address").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live_server}/console/")


def test_transparency_charts_draw_without_csp_violations(live_server, page, admin):
    messages: list[str] = []
    page.on("console", lambda m: messages.append(m.text))
    _sign_in(page, live_server, admin)
    page.get_by_role("link", name="Compliance").first.click()
    page.get_by_role("link", name="Transparency report").click()
    charts = page.locator("#report").get_by_role("img")
    assert charts.count() == 4
    box = charts.first.bounding_box()
    assert box is not None and box["width"] > 200 and box["height"] > 80
    fill = page.evaluate("getComputedStyle(document.querySelector('.pygal-chart .graph > .background')).fill")
    assert fill == "rgb(255, 255, 255)"  # the served chart stylesheet applies
    assert not [m for m in messages if "Content Security Policy" in m or "Refused" in m], messages


def test_an_admin_sets_the_turnover_with_the_keyboard(live_server, page, admin):
    _sign_in(page, live_server, admin)
    page.goto(f"{live_server}/console/compliance")
    page.get_by_label("Global annual turnover (EUR)").focus()
    page.keyboard.type("1000000000")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live_server}/console/compliance?saved=turnover")
    assert page.locator("#turnover-saved").inner_text() == "Saved."
    assert page.locator('tr[data-regime="tco"] td').first.inner_text() == "€40,000,000"
    assert page.locator('tr[data-regime="dsa"] td').first.inner_text() == "€60,000,000"
    assert page.locator('tr[data-regime="uk_osa"] td').first.inner_text() == "£18,000,000"
