"""Issue 12 in headless Chromium: the confirmation names the skipped users, the job page and the
jobs list tell the truth, the audit log, sent messages, alerts and the settings page.

Every test fails on a console error or CSP violation (tests/browser/conftest.py). The PNGs go to
var/screenshots/console-*.png for a look by eye.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core import mail
from playwright.sync_api import expect

from tests.support.users import make_user
from vpp import secrets
from vpp.audit import audit_record
from vpp.models import (
    AuditEvent,
    ItemStatus,
    Job,
    JobAction,
    JobItem,
    JobStatus,
    SyncSchedule,
    TokenHealth,
    VppServerSetting,
)
from vpp.services import alerts

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SHOTS = Path(django_settings.VAR_DIR) / "screenshots"


def shot(page, name: str, full: bool = False) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"console-{name}.png"), full_page=full)


def store_token(**fields) -> VppServerSetting:
    setting = VppServerSetting.load()
    setting.content_token_encrypted = secrets.encrypt("browser-test-token")
    setting.token_org_name = "Acme"
    for name, value in fields.items():
        setattr(setting, name, value)
    setting.save()
    return setting


def test_the_confirmation_lists_the_skipped_users_in_table_order(logged_in_page, console_url, monkeypatch):
    page = logged_in_page
    store_token()
    make_user("Able Eligible")
    for name in ("Cleo Nodevice", "Bert Nodevice", "Dora Nodevice"):
        make_user(name, devices=())
    page.goto(f"{console_url}/users/?sort=-name")
    page.check("input[data-check-all]")
    page.click("button:has-text('Send VPP invitation')")
    page.wait_for_selector("#modal[open] >> text=Who is skipped")
    page.click("#skipped-users summary")
    rows = page.locator("#skipped-users tbody td:first-child").all_inner_texts()
    assert [row.split(" (")[0] for row in rows] == ["Dora Nodevice", "Cleo Nodevice", "Bert Nodevice"]
    assert page.locator("#skipped-users tbody td:nth-child(2)").first.inner_text() == "No activated iOS/macOS device"
    shot(page, "confirmation")


def test_the_job_page_counts_work_done_and_refreshes_its_rows_when_the_job_ends(logged_in_page, console_url):
    page = logged_in_page
    job = Job.objects.create(action=JobAction.INVITE, status=JobStatus.QUEUED, total=4, skipped=1)
    users = [make_user(f"Job Person {n}") for n in range(4)]
    for user, status in zip(users, [ItemStatus.SKIPPED, *[ItemStatus.PENDING] * 3], strict=True):
        JobItem.objects.create(job=job, user=user, user_label=user.display_name, status=status)
    page.goto(f"{console_url}/vpp/jobs/{job.pk}/")
    assert page.inner_text("[data-progress-text]") == "0 of 3 users"
    assert page.inner_text("[data-progress-percent]") == "0%"
    assert page.locator("table.job-items .badge", has_text="Pending").count() == 3

    # The job ends with every user failed: the rows, the badge and "Retry failed" follow.
    JobItem.objects.filter(job=job, status=ItemStatus.PENDING).update(status=ItemStatus.FAILED, reason="Apple said no")
    Job.objects.filter(pk=job.pk).update(status=JobStatus.DONE, failed=3, finished_at=dt.datetime.now(dt.UTC))
    expect(page.locator("table.job-items .badge", has_text="Failed")).to_have_count(3, timeout=20_000)
    assert page.locator(".job-panel-head .badge").inner_text() == "Failed"
    assert page.inner_text("[data-progress-text]") == "3 of 3 users"
    expect(page.locator("button:has-text('Retry failed only (3)')")).to_be_visible()
    assert "UTC" in page.inner_text(".page-subtitle")
    shot(page, "job-page")


def test_a_running_full_sync_names_its_phase_instead_of_0_of_0(logged_in_page, console_url):
    page = logged_in_page
    job = Job.objects.create(action=JobAction.SYNC_ALL, status=JobStatus.RUNNING, phase="read_all")
    page.goto(f"{console_url}/vpp/jobs/{job.pk}/")
    text = page.inner_text("[data-progress-text]")
    assert "0 of 0" not in text and text.endswith("…")
    assert page.locator("[data-progress-percent]").count() == 0
    Job.objects.filter(pk=job.pk).update(status=JobStatus.DONE, finished_at=dt.datetime.now(dt.UTC))


def test_the_jobs_list_filters_pages_and_shows_absolute_times(logged_in_page, console_url, django_user_model):
    page = logged_in_page
    boss = django_user_model.objects.create_user("boss")
    Job.objects.create(action=JobAction.DELETE, status=JobStatus.DONE, started_by=boss, succeeded=2, failed=1)
    for _ in range(52):
        Job.objects.create(action=JobAction.SYNC_ALL, status=JobStatus.DONE)
    page.goto(f"{console_url}/vpp/jobs/")
    expect(page.locator("table.jobs-table tbody tr")).to_have_count(50)
    assert "Page 1 of 2" in page.inner_text("main")
    assert "UTC" in page.locator("table.jobs-table time").first.get_attribute("title")
    shot(page, "jobs-list")
    page.select_option("#job-filters select[name=started_by]", "boss")
    page.wait_for_url("**started_by=boss**")
    expect(page.locator("table.jobs-table tbody tr")).to_have_count(1)
    assert page.locator("table.jobs-table .badge").inner_text() == "Done with failures"
    page.select_option("#job-filters select[name=action]", "sync_all")
    page.wait_for_url("**action=sync_all**")
    assert "No jobs match" in page.inner_text("main")


def test_the_audit_log_is_listed_filtered_and_exported(logged_in_page, console_url):
    page = logged_in_page
    job = Job.objects.create(action=JobAction.INVITE, total=3)
    AuditEvent.objects.create(
        actor_name="boss",
        action="vpp.invite",
        target_summary="Send VPP invitation to 3 selected users",
        count=3,
        ip="10.1.2.3",
        job=job,
    )
    audit_record(actor=None, action="vpp.assignment_changed", details={"from": "user", "to": "device"})
    page.goto(f"{console_url}/users/")
    page.click("summary:has-text('Setting')")
    page.click("a:has-text('Audit log')")
    page.wait_for_url("**/setting/audit-log/")
    table = page.inner_text("table.audit-table")
    assert "Send VPP invitation to 3 selected users" in table and "10.1.2.3" in table
    assert "Changed the assignment method from user to device." in table
    shot(page, "audit-log")
    page.select_option("#audit-filters select[name=actor]", "boss")
    page.wait_for_url("**actor=boss**")
    expect(page.locator("table.audit-table tbody tr")).to_have_count(1)
    page.click(f"table.audit-table a:has-text('#{job.pk}')")
    page.wait_for_url(f"**/vpp/jobs/{job.pk}/")
    page.go_back()
    with page.expect_download() as download:
        page.click("#audit-export")
    assert "Send VPP invitation" in Path(download.value.path()).read_text()


def test_sent_messages_shows_the_outbox(logged_in_page, console_url, settings, tmp_path):
    page = logged_in_page
    settings.EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    settings.EMAIL_FILE_PATH = str(tmp_path)
    mail.send_mail("Join Acme's app programme", "Open https://example.com/i/abc", "it@acme.test", ["ann@x.test"])
    page.goto(f"{console_url}/users/")
    page.click("summary:has-text('Setting')")
    page.click("a:has-text('Sent messages')")
    page.click("#sent-messages summary")
    assert "https://example.com/i/abc" in page.inner_text("#sent-messages")
    shot(page, "sent-messages")


def test_alerts_banner_and_the_settings_page(logged_in_page, console_url):
    page = logged_in_page
    now = dt.datetime.now(dt.UTC)
    store_token(token_health=TokenHealth.VALID, token_expires_at=now + dt.timedelta(days=5))
    alerts.alerts_check()
    assert "expires within 7 days" in mail.outbox[0].body
    page.goto(f"{console_url}/users/")
    assert "expires within 7 days" in page.inner_text("[data-alert-banner]")

    schedule = SyncSchedule.load()
    schedule.enabled, schedule.timezone = True, "Europe/Berlin"
    schedule.next_run_at, schedule.last_run_at = now + dt.timedelta(hours=3), now - dt.timedelta(hours=21)
    schedule.save()
    page.goto(f"{console_url}/setting/ios-macos/vpp-server/")
    # One zone (the console's) for every time, with its name; the next run also in the schedule's zone.
    assert "UTC" in page.inner_text("#next-run") and "Europe/Berlin" in page.inner_text("#next-run")
    assert "UTC" in page.inner_text("#last-run")
    assert "AM" not in page.inner_text("#sync-status") and "PM" not in page.inner_text("#sync-status")
    page.check("input[name=mode][value=interval]")
    expect(page.locator("input[name=time_of_day]")).to_be_disabled()
    expect(page.locator("input[name=interval_hours]")).to_be_enabled()
    page.check("input[name=mode][value=daily]")
    expect(page.locator("input[name=interval_hours]")).to_be_disabled()
    assert page.get_attribute("input[name=time_of_day]", "type") == "text"  # no 12-hour browser clock
    page.fill("input[name=time_of_day]", "04:15")
    page.click("#schedule-save")
    page.wait_for_selector("text=Automatic sync saved")
    assert SyncSchedule.load().time_of_day == dt.time(4, 15)

    page.fill("textarea[name=alerts-recipients]", "ops@acme.test")
    page.click("#alerts-save")
    page.wait_for_selector("text=Alert settings saved")
    page.locator("#schedule").scroll_into_view_if_needed()
    shot(page, "settings", full=True)
