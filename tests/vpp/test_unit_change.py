"""Issue 11.3: the organizational unit changes under the token (sandbox over real HTTP).

Scenario A: three users are Associated in unit A; the admin uploads a token of unit B (another
``uId``). Scenario B: notifications were configured for unit A. Plus: a full read reconciles
users Apple no longer lists, and a renewal whose Apple ``tokenExpirationDate`` lags behind.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.support.job_loop import run_job
from tests.support.sandbox import store_sandbox_token
from tests.support.users import make_user
from users.models import User
from users.selectors import UserSelection
from vpp import secrets as vault
from vpp.apple.client import VppClient
from vpp.apple.token_file import parse_content_token
from vpp.jobs.engine import job_create
from vpp.jobs.plan import vpp_plan_build
from vpp.models import (
    AppleNotification,
    AuditEvent,
    ItemStatus,
    JobAction,
    JobItem,
    JobStatus,
    SyncRun,
    TokenHealth,
    VppServerSetting,
    VppUser,
    VppUserStatus,
)
from vpp.services import setting as setting_service
from vpp.services import sync as sync_service

pytestmark = pytest.mark.sandbox


def associated_in_unit_a(vpp_sandbox, count=3) -> list[User]:
    apple = VppClient(vpp_sandbox.token, base_url=vpp_sandbox.base_url)
    users = [make_user(f"Person {n}", vpp_status=VppUserStatus.ASSOCIATED, at_apple=apple) for n in range(count)]
    for user in users:
        record = next(r for r in vpp_sandbox.users() if r["clientUserId"] == str(user.vpp_user.client_user_id))
        vpp_sandbox.accept_invitation(record["inviteCode"])
    return users


def invite(users):
    plan = vpp_plan_build(
        action=JobAction.INVITE, users=User.objects.filter(pk__in=[u.pk for u in users]), channel="email"
    )
    return job_create(plan=plan, actor=None, selection=UserSelection(ids=tuple(u.pk for u in users)))


def full_sync(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        started = sync_service.sync_start(actor=None, trigger="schedule")
    return run_job(started.job, None)


@pytest.mark.django_db
def test_a_token_of_another_unit_needs_confirmation_and_then_starts_afresh(
    vpp_sandbox, sandbox_unit, django_capture_on_commit_callbacks
):
    users = associated_in_unit_a(vpp_sandbox)
    uid_a = sandbox_unit.token_uid
    token_b = vpp_sandbox.mint_token(location="unit-b")

    # Before saving: said so, with what will happen; nothing changes.
    with pytest.raises(setting_service.UnitChangeUnconfirmed) as refused:
        setting_service.token_upload(data=token_b, actor=None)
    assert "not a renewal" in refused.value.reason and "3 VPP users" in refused.value.reason
    setting = VppServerSetting.load()
    assert vault.decrypt(setting.content_token_encrypted) == vpp_sandbox.token and setting.token_uid == uid_a
    assert VppUser.objects.filter(user__isnull=False, unit_uid="").count() == 3

    setting = setting_service.token_upload(data=token_b, actor=None, confirm_unit_change=True)

    assert setting.token_uid and setting.token_uid != uid_a
    assert setting.users_version_id == ""  # the next read is a full one
    moved = VppUser.objects.filter(unit_uid=uid_a)
    assert moved.count() == 3 and not moved.filter(user__isnull=False).exists()
    assert set(moved.values_list("former_user", flat=True)) == {u.pk for u in users}  # kept in history
    assert AuditEvent.objects.filter(action="vpp.unit_changed").count() == 1

    # Send VPP invitation no longer skips them as "Already associated": they are invited in unit B.
    job = run_job(invite(users), None)
    assert (job.status, job.succeeded, job.skipped) == (JobStatus.DONE, 3, 0), list(
        JobItem.objects.filter(job=job).values("status", "reason")
    )
    assert len(vpp_sandbox.users(location="unit-b")) == 3

    job = full_sync(django_capture_on_commit_callbacks)
    run = SyncRun.objects.get(job=job)
    assert job.status == JobStatus.DONE and run.full
    assert run.counts["apple_users"] == 3 and run.counts.get("absent_at_apple", 0) == 0
    # the old unit's rows are history: not retired at Apple by the sync, not touched
    assert {r["status"] for r in vpp_sandbox.users(location=vpp_sandbox.location)} == {"Associated"}
    assert set(moved.values_list("status", flat=True)) == {VppUserStatus.ASSOCIATED}


@pytest.mark.django_db
def test_a_renewal_of_the_same_unit_is_saved_without_confirmation(vpp_sandbox, sandbox_unit):
    associated_in_unit_a(vpp_sandbox, count=1)
    renewed = vpp_sandbox.mint_token(expires_in_days=400)
    setting = setting_service.token_upload(data=renewed, actor=None)
    assert setting.token_health == TokenHealth.VALID
    assert VppUser.objects.filter(unit_uid="", user__isnull=False).count() == 1
    assert not AuditEvent.objects.filter(action="vpp.unit_changed").exists()


@pytest.mark.django_db
def test_a_full_read_marks_users_apple_no_longer_lists(vpp_sandbox, sandbox_unit, django_capture_on_commit_callbacks):
    # The stored token was swapped without the unit change being noticed (its uId was never
    # read): a full read of unit B must not leave unit A's users "associated".
    users = associated_in_unit_a(vpp_sandbox)
    setting = VppServerSetting.load()
    setting.token_uid = ""
    setting.save()
    VppUser.objects.update(updated_at=timezone.now() - dt.timedelta(minutes=1))
    store_sandbox_token(vpp_sandbox)  # the same unit first: a full read keeps them
    job = full_sync(django_capture_on_commit_callbacks)
    assert SyncRun.objects.get(job=job).counts["absent_at_apple"] == 0

    setting = VppServerSetting.load()
    setting.content_token_encrypted = vault.encrypt(vpp_sandbox.mint_token(location="unit-b"))
    setting.users_version_id = ""
    setting.save()
    job = full_sync(django_capture_on_commit_callbacks)

    run = SyncRun.objects.get(job=job)
    assert job.status == JobStatus.DONE and run.full and run.counts["absent_at_apple"] == 3
    for user in users:
        user.vpp_user.refresh_from_db()
        assert user.vpp_user.status == VppUserStatus.RETIRED
        assert "absent from Apple's complete listing" in user.vpp_user.last_error_message
    reasons = JobItem.objects.filter(job=job, step="read", status=ItemStatus.SUCCEEDED).values_list("reason", flat=True)
    assert len(reasons) == 3 and all(r.startswith("Was associated here") for r in reasons)
    # and Send VPP invitation invites them in unit B instead of skipping them as "Already associated"
    job = run_job(invite(users), None)
    assert (job.succeeded, job.skipped) == (3, 0)


@pytest.mark.django_db
def test_a_delta_read_marks_nobody_absent(vpp_sandbox, sandbox_unit, django_capture_on_commit_callbacks):
    associated_in_unit_a(vpp_sandbox, count=2)
    full_sync(django_capture_on_commit_callbacks)
    VppUser.objects.update(updated_at=timezone.now() - dt.timedelta(minutes=1))
    job = full_sync(django_capture_on_commit_callbacks)  # a delta: most users are not in it
    run = SyncRun.objects.get(job=job)
    assert not run.full and run.counts["absent_at_apple"] == 0
    assert set(VppUser.objects.values_list("status", flat=True)) == {VppUserStatus.ASSOCIATED}


@pytest.mark.django_db
def test_a_renewal_apple_has_not_caught_up_with_shows_the_later_date_and_why(vpp_sandbox, sandbox_unit):
    soon = timezone.now() + dt.timedelta(days=5)
    vpp_sandbox.control(reported_expiry={vpp_sandbox.location: soon.strftime("%Y-%m-%dT%H:%M:%S+0000")})
    renewed = vpp_sandbox.mint_token(expires_in_days=365)
    file_expiry = parse_content_token(renewed).expires_at

    setting = setting_service.token_upload(data=renewed, actor=None)

    assert setting.token_health == TokenHealth.VALID, setting.token_health_detail
    assert setting.token_expires_at == file_expiry
    assert "Apple still reports the previous expiry" in setting.token_health_detail
    assert "renew it soon" not in setting.token_health_detail
    # the daily check says the same
    check = setting_service.token_check_health()
    assert check.health == TokenHealth.VALID and "previous expiry" in check.detail
    assert VppServerSetting.load().token_expires_at == file_expiry


@pytest.mark.django_db(transaction=True)
def test_notifications_are_set_up_again_for_the_new_unit(live_server, vpp_sandbox, settings):
    settings.VPP_EVENT_POLL_INTERVAL = 1
    setting = VppServerSetting.load()
    setting.api_base_url = vpp_sandbox.base_url
    setting.save()
    setting_service.token_upload(data=vpp_sandbox.token, actor=None)
    setting_service.notifications_configure(public_url=live_server.url, actor=None)
    before = VppServerSetting.load()
    assert before.notification_configured_at

    setting = setting_service.token_upload(
        data=vpp_sandbox.mint_token(location="unit-b"), actor=None, confirm_unit_change=True
    )

    assert setting.notification_configured_at > before.notification_configured_at
    assert setting.notification_auth_token_encrypted != before.notification_auth_token_encrypted
    [unit_b] = [loc for loc in vpp_sandbox.state("locations") if loc["token"] == "unit-b"]
    assert unit_b["clientConfig"]["notificationUrl"] == f"{live_server.url}/vpp/notifications/"
    assert AppleNotification.objects.filter(notification_type="TEST_NOTIFICATION").count() == 2


@pytest.mark.django_db
def test_when_apple_refuses_the_notification_address_the_new_unit_shows_not_configured(vpp_sandbox, sandbox_unit):
    setting = VppServerSetting.load()
    setting.notification_url = "http://127.0.0.1:9/vpp/notifications/"  # Apple cannot reach it
    setting.notification_configured_at = timezone.now()
    setting.save()
    setting = setting_service.token_upload(
        data=vpp_sandbox.mint_token(location="unit-b"), actor=None, confirm_unit_change=True
    )
    setting.refresh_from_db()
    assert setting.notification_configured_at is None and setting.notification_url == ""


@pytest.mark.django_db
def test_the_setting_page_asks_before_using_another_unit(admin, client, vpp_sandbox, sandbox_unit):
    url = reverse("vpp:server-setting")
    token_b = vpp_sandbox.mint_token(location="unit-b")

    page = client.post(url, {"section": "token", "token_text": token_b})
    html = page.content.decode()
    assert page.status_code == 422
    assert "not a renewal" in html and 'id="unit-change-confirm"' in html and token_b not in html
    assert VppServerSetting.load().token_uid == sandbox_unit.token_uid

    page = client.post(url, {"section": "token_unit_change"})  # the box not ticked
    assert page.status_code == 422 and "not a renewal" in page.content.decode()
    assert VppServerSetting.load().token_uid == sandbox_unit.token_uid

    page = client.post(url, {"section": "token_unit_change", "understood": "on"})
    assert page.status_code == 302
    assert VppServerSetting.load().token_uid not in ("", sandbox_unit.token_uid)
    assert vault.decrypt(VppServerSetting.load().content_token_encrypted) == token_b


@pytest.mark.django_db
def test_jobs_still_running_for_the_old_unit_stop(vpp_sandbox, sandbox_unit, django_capture_on_commit_callbacks):
    users = [make_user(f"Person {n}") for n in range(2)]
    with django_capture_on_commit_callbacks(execute=False):
        job = invite(users)
        sync_job = sync_service.sync_start(actor=None, trigger="manual").job

    setting_service.token_upload(data=vpp_sandbox.mint_token(location="unit-b"), actor=None, confirm_unit_change=True)

    for stopped in (job, sync_job):
        stopped.refresh_from_db()
        assert stopped.status == JobStatus.FAILED and "organizational unit changed" in stopped.error
    assert sync_service.running_sync_job() is None  # the full sync's claim is free again
    assert vpp_sandbox.users(location="unit-b") == []


@pytest.mark.django_db
def test_removing_the_token_first_does_not_skip_the_confirmation(vpp_sandbox, sandbox_unit):
    associated_in_unit_a(vpp_sandbox, count=1)
    setting_service.token_remove(actor=None)
    with pytest.raises(setting_service.UnitChangeUnconfirmed, match="1 VPP user of the current unit"):
        setting_service.token_upload(data=vpp_sandbox.mint_token(location="unit-b"), actor=None)
    # the same unit again is no change
    assert setting_service.token_upload(data=vpp_sandbox.token, actor=None).token_uid == sandbox_unit.token_uid
    assert VppUser.objects.filter(unit_uid="", user__isnull=False).count() == 1
