"""The confirmation modal when the selection changed before the admin confirmed: the fresh plan
with a notice, swapped into the modal (static/js/vpp.js shows 409/422 answers), and no job.
Writes var/screenshots/vpp-selection-changed.png."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings as django_settings
from playwright.sync_api import expect

from tests.support.users import make_user
from vpp import secrets
from vpp.models import Job, VppServerSetting, VppUser, VppUserStatus

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SHOTS = Path(django_settings.VAR_DIR) / "screenshots"


def test_a_selection_that_changed_since_the_confirmation_is_shown_again_not_applied(logged_in_page, console_url):
    page = logged_in_page
    setting = VppServerSetting.load()
    setting.content_token_encrypted = secrets.encrypt("fake-s-token")
    setting.token_org_name = "Example Org"
    setting.save()
    users = [make_user(name=f"Changing {n}", vpp_status=VppUserStatus.INVITED) for n in range(3)]

    page.goto(f"{console_url}/users/?q=Changing")
    boxes = page.locator("input.row-check")
    expect(boxes).to_have_count(3)
    for index in range(3):
        boxes.nth(index).check()
    page.click("button:has-text('Delete from VPP')")
    page.wait_for_selector("#modal[open] >> text=will be deleted from VPP")
    assert "3 users" in page.inner_text("#modal")

    VppUser.objects.filter(user=users[0]).update(status=VppUserStatus.RETIRED)  # meanwhile, elsewhere
    page.check("#modal input[name=understood]")
    page.click("#modal button:has-text('Delete 3 from VPP')")
    page.wait_for_selector("#modal >> text=The selection changed since the confirmation was shown")
    modal = page.inner_text("#modal")
    assert "2 users" in modal and "Already retired from VPP" in modal
    assert page.locator("#modal button:has-text('Delete 2 from VPP')").count() == 1
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "vpp-selection-changed.png"))
    assert not Job.objects.exists()
    # The browser logs the 409 answer itself; anything else (a CSP violation, a JS error) is a bug.
    assert [error for error in page.console_errors if "status of 409" not in error] == []
