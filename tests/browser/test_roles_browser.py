"""A Viewer's and an Operator's Users page in headless Chromium: actions their role does not allow
are disabled with the reason as text on the page, stay disabled when rows are ticked, and cannot
be reached with the Tab key. Also takes the PNGs of Setting › Administrators and of the login
lockout and the Viewer's toolbar (var/screenshots/roles-*.png)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings as django_settings

from accounts.roles import ADMINISTRATOR, OPERATOR, VIEWER
from tests.support.roles import ADMIN_PASSWORD, make_admin
from tests.support.users import make_users
from vpp import secrets
from vpp.models import VppServerSetting

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SHOTS = Path(django_settings.VAR_DIR) / "screenshots"
ACTIONS = ("Send VPP invitation", "Link Managed Apple Accounts", "Sync VPP", "Delete from VPP")


@pytest.fixture
def token():
    setting = VppServerSetting.load()  # a token, so no blocker: what is off is off for the role
    setting.content_token_encrypted = secrets.encrypt("fake-s-token")
    setting.token_org_name = "Example Org"
    setting.save()


def log_in(page, console_url: str, username: str) -> None:
    page.goto(f"{console_url}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/users/**")


def tab_stops(page, count: int = 80) -> list[str]:
    """The text of each element the Tab key reaches, starting from the top of the page."""
    page.locator("body").focus()
    stops = []
    for _ in range(count):
        page.keyboard.press("Tab")
        stops.append(page.evaluate("document.activeElement ? document.activeElement.textContent.trim() : ''"))
    return stops


def action(page, label: str):
    return page.locator(".vpp-actions button", has_text=label)


def test_a_viewer_reads_why_the_actions_are_off_and_cannot_tab_to_them(page, console_url, token):
    make_users(3)
    make_admin("vera", role=VIEWER)
    log_in(page, console_url, "vera")
    page.locator("input.row-check").first.check()  # a selection: console.js enables what it may

    reason = page.locator("#vpp-actions-reason")
    assert reason.is_visible()
    denied = "Send VPP invitation, Delete from VPP, Sync VPP, Link Managed Apple Accounts"
    assert f"Your role does not allow: {denied}." in reason.inner_text()
    for label in ACTIONS:
        assert action(page, label).is_disabled()
        assert action(page, label).get_attribute("aria-describedby") == "vpp-actions-reason"
    stops = tab_stops(page)
    assert "VPP jobs" in stops  # the link right after the buttons is reached ...
    assert not set(ACTIONS) & set(stops)  # ... the disabled actions never are
    assert page.console_errors == []
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "roles-viewer-toolbar.png"), full_page=False)


def test_an_operator_can_tab_to_invite_and_sync_but_not_delete(page, console_url, token):
    make_users(3)
    make_admin("otto", role=OPERATOR)
    log_in(page, console_url, "otto")
    page.locator("input.row-check").first.check()

    assert page.locator("#vpp-actions-reason").inner_text().startswith("Your role does not allow: Delete from VPP.")
    assert action(page, "Send VPP invitation").is_enabled() and action(page, "Sync VPP").is_enabled()
    assert action(page, "Delete from VPP").is_disabled()
    stops = tab_stops(page)
    assert "Send VPP invitation" in stops and "Sync VPP" in stops and "Delete from VPP" not in stops


def test_screenshots_of_the_administrators_page_and_the_login_lockout(page, console_url, settings):
    SHOTS.mkdir(parents=True, exist_ok=True)
    make_admin("ada", role=ADMINISTRATOR, email="ada@example.org")
    make_admin("otto", role=OPERATOR)
    make_admin("vera", role=VIEWER, active=False)
    log_in(page, console_url, "ada")
    page.goto(f"{console_url}/setting/administrators/")
    page.select_option("#admins tr[data-username=otto] select[name=role]", VIEWER)
    page.click("#admins tr[data-username=otto] button:has-text('Save role')")
    assert "otto is now Viewer." in page.locator("#messages").inner_text()
    page.screenshot(path=str(SHOTS / "roles-administrators.png"), full_page=True)

    page.click("text=Log out")
    settings.LOGIN_FAILURES_PER_ADDRESS = settings.AXES_FAILURE_LIMIT = 3
    for _ in range(3):
        page.fill("input[name=username]", "ada")
        page.fill("input[name=password]", "not-the-password")
        page.click("button[type=submit]")
        page.wait_for_load_state()
    lockout = page.locator("#login-lockout")
    assert "Too many failed logins from your network address" in lockout.inner_text()
    assert "The next try is allowed at" in lockout.inner_text()
    page.screenshot(path=str(SHOTS / "roles-login-lockout.png"), full_page=False)
