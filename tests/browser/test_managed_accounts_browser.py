"""Issue 13 in headless Chromium, with a real Celery worker and the sandbox over HTTP: the Users page
shows Managed Apple Accounts, Send VPP invitation says who is linked silently and who is invited,
and the VPP Server Setting page turns reminders on. Writes PNGs to var/screenshots/."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from tests.browser import test_vpp_jobs_browser as jobs_browser
from tests.support.users import make_user
from vpp.models import JobItem, VppServerSetting, VppUser, VppUserStatus

# The fixtures of the jobs browser test: a real worker with the sandbox, and a logged-in tab.
worker, page = jobs_browser.worker, jobs_browser.page
shot, tick_filtered = jobs_browser.shot, jobs_browser.tick_filtered
pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.sandbox, pytest.mark.django_db(transaction=True)]


def test_invite_links_silently_and_reminders_are_set(page, live_server, django_user_model):
    admin = django_user_model.objects.get(username="admin")  # the page fixture's admin may also change the setting
    admin.user_permissions.add(Permission.objects.get(codename="change_vppserversetting"))
    linked = make_user(name="Maa Linked", managed_apple_account="maa.linked@corp.example")
    make_user(name="Maa Invited", email="maa.invited@example.com")

    tick_filtered(page, live_server, "Maa", 2)
    assert "Managed: maa.linked@corp.example" in page.inner_text("#user-table")
    page.click("button:has-text('Send VPP invitation')")
    page.wait_for_selector("#modal[open] >> text=will be linked silently")
    modal = page.inner_text("#modal")
    assert "1 will be linked silently" in modal and "1 will be invited" in modal
    shot(page, "confirm-invite-silent")
    page.click("#modal button:has-text('Link 1, invite 1')")
    page.wait_for_selector("#modal .job-panel[data-job-status=done]", timeout=60_000)
    page.click("#modal a:has-text('Open job page')")
    page.wait_for_selector("text=Linked silently with the user's Managed Apple Account")
    shot(page, "job-page-silent")
    assert VppUser.objects.get(user=linked).status == VppUserStatus.ASSOCIATED
    assert JobItem.objects.filter(reason__startswith="Linked silently").count() == 1

    page.goto(f"{live_server.url}{reverse('vpp:server-setting')}")
    page.check("#lifecycle input[name=reminders_enabled]")
    page.fill("#lifecycle input[name=reminder_after_days]", "5")
    page.fill("#lifecycle input[name=reminder_max]", "3")
    page.check("#lifecycle input[name=reminder_escalate]")
    page.click("#lifecycle-save")
    page.wait_for_selector("text=reminders saved")
    page.locator("#lifecycle").scroll_into_view_if_needed()
    shot(page, "setting-reminders")
    setting = VppServerSetting.load()
    assert (setting.reminders_enabled, setting.reminder_after_days, setting.reminder_max) == (True, 5, 3)
    assert setting.reminder_escalate and not setting.convert_during_sync
