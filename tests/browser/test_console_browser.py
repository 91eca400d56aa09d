"""The console in a real browser (Debian Chromium through Playwright): sign in, a wrong password, sign out, and
signing in with the keyboard alone."""

from __future__ import annotations

import pytest

from bastion.accounts.service import AccountService

PASSWORD = "correct horse battery"
pytestmark = pytest.mark.parametrize("db", ["sqlite"], indirect=True)  # the browser is the subject, not the database


@pytest.fixture
def reviewer(db) -> str:
    svc = AccountService(db)
    svc.create_organisation("acme")
    user = svc.create_user("acme", "ana@acme.example", "lead")
    svc.set_password("acme", user.id, PASSWORD)
    return user.email


def test_login_shows_the_home_page(live_server, page, reviewer):
    page.goto(f"{live_server}/console/")
    assert page.url.startswith(f"{live_server}/console/login")  # redirected: no session
    page.get_by_label("E-mail address").fill(reviewer)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live_server}/console/")
    assert page.locator("#user-email").inner_text() == reviewer
    assert page.locator("#user-organisation").inner_text() == "acme"
    assert page.locator("#user-role").inner_text() == "lead"
    assert page.get_by_role("navigation", name="Main").is_visible()


def test_wrong_password_shows_an_error(live_server, page, reviewer):
    page.goto(f"{live_server}/console/login")
    page.get_by_label("E-mail address").fill(reviewer)
    page.get_by_label("Password").fill("not the password at all")
    page.get_by_role("button", name="Sign in").click()
    alert = page.get_by_role("alert")
    assert "wrong e-mail address or password" in alert.inner_text()
    assert page.get_by_label("E-mail address").input_value() == reviewer  # kept; the password is not
    assert page.get_by_label("Password").input_value() == ""


def test_sign_out(live_server, page, reviewer):
    page.goto(f"{live_server}/console/login")
    page.get_by_label("E-mail address").fill(reviewer)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live_server}/console/")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{live_server}/console/login")
    page.goto(f"{live_server}/console/")
    assert page.url.startswith(f"{live_server}/console/login")


def test_keyboard_only_login_and_skip_link(live_server, page, reviewer):
    page.goto(f"{live_server}/console/login")
    # Autofocus puts the caret in the e-mail field; Tab and Enter do the rest.
    assert page.evaluate("document.activeElement.id") == "email"
    page.keyboard.type(reviewer)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "password"
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live_server}/console/")
    assert page.locator("#user-email").inner_text() == reviewer
    # The first Tab on a page reaches the skip link, which is visible when focused and moves focus to the content.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"
    assert page.locator(".skip-link").is_visible()
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    # Sign out with the keyboard: Tab through the header to the button, then Enter.
    for _ in range(20):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent.trim()") == "Sign out":
            break
    else:
        pytest.fail("the Sign out button cannot be reached with Tab")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live_server}/console/login")
