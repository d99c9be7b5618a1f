"""VPP Server Setting in headless Chromium: upload a token, change the schedule, Sync now, watch it finish.

``test_it_screenshots_the_token_states`` also writes PNGs of the page to var/screenshots/.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection

from tests.support.job_loop import run_job
from tests.support.users import make_user
from vpp.apple.client import VppClient
from vpp.apple.types import MdmInfo
from vpp.models import Job, SyncSchedule, VppServerSetting, VppUserStatus
from vpp.services import sync as sync_service

pytestmark = [pytest.mark.browser, pytest.mark.sandbox, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def setting_page(logged_in_page, console_url):
    """The shared logged-in tab (tests/browser/conftest.py), on Setting › iOS/macOS › VPP Server Setting."""
    logged_in_page.goto(f"{console_url}/setting/ios-macos/vpp-server/")
    return logged_in_page


@pytest.fixture
def sandbox_url(vpp_sandbox, settings):
    settings.VPP_EVENT_POLL_INTERVAL = 1
    setting = VppServerSetting.load()
    setting.api_base_url = vpp_sandbox.base_url
    setting.save()
    return vpp_sandbox.base_url


def upload_token(page, token: str, tmp_path: Path):
    path = tmp_path / "Example.vpptoken"
    path.write_text(token)
    page.set_input_files("input[name=token_file]", str(path))
    page.click("#token-upload")


def test_it_uploads_a_token_changes_the_schedule_and_syncs(
    setting_page, vpp_sandbox, sandbox_url, tmp_path, monkeypatch
):
    page = setting_page
    assert "No content token yet" in page.content()
    upload_token(page, vpp_sandbox.token, tmp_path)
    page.wait_for_selector("#token-org")
    assert page.inner_text("#token-org") == vpp_sandbox.org
    assert page.inner_text("#token-health-badge") == "Valid"
    assert page.console_errors == []

    page.check("input[name=enabled]")
    page.check("input[name=mode][value=daily]")
    page.fill("input[name=time_of_day]", "02:30")
    page.select_option("select[name=timezone]", "Europe/Berlin")
    page.click("#schedule-save")
    page.wait_for_selector("text=Automatic sync saved")
    assert "02:30 CET, Europe/Berlin)" in page.inner_text("#next-run")  # and in UTC, the console's zone
    assert SyncSchedule.load().enabled

    # A user at Apple who accepted the invitation; the sync must find out.
    apple = VppClient(vpp_sandbox.token, base_url=vpp_sandbox.base_url)
    ada = make_user(
        "Ada", login_id="ada", email="ada@example.com", devices=(), vpp_status=VppUserStatus.INVITED, at_apple=apple
    ).vpp_user
    [record] = vpp_sandbox.users()
    vpp_sandbox.accept_invitation(record["inviteCode"])

    # The worker: a thread that waits until the test has seen the running state.
    release = threading.Event()

    def worker(job_id):
        try:
            release.wait(20)
            run_job(Job.objects.get(pk=job_id), None)
        finally:
            connection.close()

    monkeypatch.setattr(
        sync_service, "job_enqueue", lambda *, job_id: threading.Thread(target=worker, args=(job_id,)).start()
    )
    page.click("#sync-now")
    page.wait_for_selector("#sync-running")
    assert "is queued" in page.inner_text("#sync-running")
    assert "Queued" in page.inner_text("#last-run") and "Running" not in page.inner_text("#last-run")
    release.set()
    page.wait_for_selector("#last-run .result-succeeded")  # htmx polls until the job is done
    assert page.query_selector("#sync-running") is None
    assert "Apple users 1" in page.inner_text("#last-counts")
    ada.refresh_from_db()
    assert ada.status == VppUserStatus.ASSOCIATED
    assert page.console_errors == []  # no CSP violation, no script error


def test_it_screenshots_the_token_states(setting_page, vpp_sandbox, sandbox_url, tmp_path):
    page = setting_page
    out = Path(django_settings.VAR_DIR) / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out / "vpp-setting-no-token.png"), full_page=True)
    upload_token(page, vpp_sandbox.token, tmp_path)
    page.wait_for_selector("#token-org")
    page.screenshot(path=str(out / "vpp-setting-valid.png"), full_page=True)

    vpp_sandbox.expire_token()
    page.click("text=Check with Apple now")
    page.wait_for_selector("#token-health-badge:has-text('Expired')")
    assert "9621" in page.inner_text("#token-health-detail")
    assert page.query_selector(".console-banner") is None  # this page shows it in the token card instead
    page.screenshot(path=str(out / "vpp-setting-expired.png"), full_page=True)

    vpp_sandbox.reset()
    other = VppClient(vpp_sandbox.token, base_url=vpp_sandbox.base_url)
    other.update_client_config(mdm_info=MdmInfo(id="other", name="Other MDM Inc.", metadata="mdm.example"))
    page.click("text=Check with Apple now")
    page.wait_for_selector("#takeover-button")
    page.screenshot(path=str(out / "vpp-setting-other-mdm.png"), full_page=True)
    page.check("input[name=understood]")
    page.click("#takeover-button")
    page.wait_for_selector("text=kmconsole now manages this location")
    assert page.inner_text("#token-health-badge") == "Valid"
    assert page.console_errors == []
