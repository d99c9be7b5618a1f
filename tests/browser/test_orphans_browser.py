"""Issues 11.3 and 11.5 in headless Chromium: orphan Apple users retired from the sync result page,
and the confirmation a token of another organizational unit needs. PNGs go to var/screenshots/."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from tests.support.job_loop import run_job
from tests.support.sandbox import upload_sandbox_token
from vpp.apple.client import VppClient
from vpp.apple.types import RequestUser
from vpp.models import Job, JobAction, JobStatus, VppServerSetting
from vpp.services import sync as sync_service

pytestmark = [pytest.mark.browser, pytest.mark.sandbox, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def screenshots() -> Path:
    out = Path(django_settings.VAR_DIR) / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture
def unit(vpp_sandbox, settings):
    settings.VPP_EVENT_POLL_INTERVAL = 1
    return upload_sandbox_token(vpp_sandbox)


def orphan_at_apple(vpp_sandbox, email: str) -> str:
    earlier = VppClient(vpp_sandbox.token, base_url=vpp_sandbox.base_url)
    cuid = str(uuid.uuid4())
    (event,) = earlier.create_users([RequestUser(cuid, email=email)])
    earlier.wait_for_event(event, poll_interval=0.05)
    record = next(r for r in vpp_sandbox.users() if r["clientUserId"] == cuid)
    vpp_sandbox.accept_invitation(record["inviteCode"], f"{email}.account@icloud.example")
    return cuid


def test_an_admin_retires_an_orphan_from_the_sync_result_page(
    logged_in_page, console_url, vpp_sandbox, unit, screenshots
):
    page = logged_in_page
    orphan_id = orphan_at_apple(vpp_sandbox, "left@example.com")
    orphan_at_apple(vpp_sandbox, "other@example.com")
    sync_job = run_job(sync_service.sync_start(actor=None, trigger="manual").job, None)

    page.goto(f"{console_url}/vpp/jobs/{sync_job.pk}/")
    row = page.locator("#sync-result tr", has_text=orphan_id)
    row.locator("select").select_option("retire")
    page.screenshot(path=str(screenshots / "vpp-orphans-sync-result.png"), full_page=True)
    page.click("#orphans-review")
    page.wait_for_selector("#orphans-confirm")
    text = page.inner_text("#orphans-confirm")
    assert "Retire at Apple (1)" in text and orphan_id in text and "other@example.com" not in text
    page.screenshot(path=str(screenshots / "vpp-orphans-confirm.png"), full_page=True)
    page.check("input[name=understood]")
    page.click("#orphans-apply")
    page.wait_for_url("**/vpp/jobs/*/")

    job = Job.objects.get(action=JobAction.ORPHANS)
    assert page.url.rstrip("/").endswith(f"/vpp/jobs/{job.pk}")
    job = run_job(job, None)
    assert (job.status, job.succeeded) == (JobStatus.DONE, 1)
    page.reload()
    assert "Licences revoked and user retired." in page.inner_text("body")
    page.screenshot(path=str(screenshots / "vpp-orphans-job.png"), full_page=True)
    assert next(r for r in vpp_sandbox.users() if r["clientUserId"] == orphan_id)["status"] == "Retired"
    assert page.console_errors == []


def test_a_token_of_another_unit_asks_for_confirmation(logged_in_page, console_url, vpp_sandbox, unit, screenshots):
    page = logged_in_page
    page.goto(f"{console_url}/setting/ios-macos/vpp-server/")
    page.fill("textarea[name=token_text]", vpp_sandbox.mint_token(location="unit-b"))
    page.click("#token-upload")
    page.wait_for_selector("#unit-change")
    assert "not a renewal" in page.inner_text("#unit-change")
    page.screenshot(path=str(screenshots / "vpp-unit-change-confirm.png"), full_page=True)
    uid_a = VppServerSetting.load().token_uid
    page.check("#unit-change input[name=understood]")
    page.click("#unit-change-confirm")
    page.wait_for_selector("#token-location")
    assert "unit-b" in page.inner_text("#token-location")
    assert VppServerSetting.load().token_uid != uid_a
    # (the confirmation answers 422, as every setting form that needs the admin's attention does)
    assert [e for e in page.console_errors if "status of 422" not in e] == []
