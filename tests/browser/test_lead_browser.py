"""The leads' pages in a real browser (Debian Chromium through Playwright): the dashboard's charts draw under the
console's Content-Security-Policy with no violation, and a queue is created with the keyboard alone."""

from __future__ import annotations

import pytest

from bastion.accounts.service import AccountService

PASSWORD = "correct horse battery"
pytestmark = pytest.mark.parametrize("db", ["sqlite"], indirect=True)  # the browser is the subject, not the database


@pytest.fixture
def lead(db) -> str:
    svc = AccountService(db)
    svc.create_organisation("acme")
    user = svc.create_user("acme", "lee@acme.example", "lead")
    svc.set_password("acme", user.id, PASSWORD)
    return user.email


def _sign_in(page, live_server: str, email: str) -> None:  # noqa: ANN001 - a playwright Page
    page.goto(f"{live_server}/console/login")
    page.get_by_label("E-mail address").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live_server}/console/")


def test_dashboard_charts_draw_without_csp_violations(live_server, page, lead):
    messages: list[str] = []
    page.on("console", lambda m: messages.append(m.text))
    _sign_in(page, live_server, lead)
    page.goto(f"{live_server}/console/lead/dashboard")
    charts = page.get_by_role("img")
    assert charts.count() == 2  # decisions per hour and queue depth (no decisions yet: no time-to-decision chart)
    box = charts.first.bounding_box()
    assert box is not None and box["width"] > 200 and box["height"] > 80
    # the served chart stylesheet applies: the plot background is white, not the SVG default black fill
    fill = page.evaluate("getComputedStyle(document.querySelector('.pygal-chart .graph > .background')).fill")
    assert fill == "rgb(255, 255, 255)"
    assert not [m for m in messages if "Content Security Policy" in m or "Refused" in m], messages


def test_create_a_queue_with_the_keyboard(live_server, page, lead):
    _sign_in(page, live_server, lead)
    page.goto(f"{live_server}/console/lead/queues")
    page.get_by_label("Name", exact=True).focus()
    page.keyboard.type("french")
    page.keyboard.press("Tab")  # description
    page.keyboard.type("Posts in French")
    page.keyboard.press("Tab")  # first outcome checkbox
    page.keyboard.press("Space")
    page.get_by_label("SLA in minutes").focus()
    page.keyboard.type("45")
    page.keyboard.press("Enter")  # submits the form
    page.wait_for_url(f"{live_server}/console/lead/queues?saved=queue_created")
    assert page.get_by_role("status").inner_text() == "Queue created."
    row = page.locator('tr[data-queue="french"]')
    assert "outcomes: review" in row.inner_text() and "45 min" in row.inner_text()
