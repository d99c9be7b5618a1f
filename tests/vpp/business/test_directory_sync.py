"""Sync people and devices from the Apple Business sandbox through the job engine: a dry run first,
creation, updates, matching users that existed before, deactivation (and the VPP retirement that
follows, against the VPP sandbox), a scope of user groups, devices by serial number."""

from __future__ import annotations

import pytest

from tests.support.job_loop import run_job
from tests.support.users import make_user
from users.models import ActivationState, Device, Platform, User
from vpp.apple.client import VppClient
from vpp.business_sandbox.seed import person
from vpp.models import (
    AppleBusinessSetting,
    AuditEvent,
    ItemStatus,
    Job,
    JobAction,
    JobItem,
    JobStatus,
    SyncResult,
    TokenHealth,
    VppServerSetting,
    VppUserStatus,
)
from vpp.services import business
from vpp.services import setting as setting_service

pytestmark = pytest.mark.sandbox


@pytest.fixture
def directory(business_sandbox, settings):
    settings.APPLE_BUSINESS_REQUESTS_PER_MINUTE = 100_000
    account = business_sandbox.account
    return business.business_account_save(
        client_id=account.client_id,
        key_id=account.key_id,
        private_key=account.private_key,
        actor=None,
        api_base_url=business_sandbox.root_url,
        token_url=business_sandbox.token_url,
    )


def sync(capture, *, dry_run=False) -> Job:
    with capture(execute=False):
        started = business.directory_sync_start(actor=None, dry_run=dry_run)
    assert started.started
    return run_job(started.job, None)


def reasons(job) -> dict[str, str]:
    return dict(JobItem.objects.filter(job=job).values_list("user_label", "reason"))


@pytest.mark.django_db
def test_the_account_is_checked_and_stored_encrypted(directory, business_sandbox):
    setting = AppleBusinessSetting.load()
    assert setting.health == TokenHealth.VALID and setting.org_name == "Example Corp"
    assert (setting.people_count, setting.device_count) == (60, 60)
    assert {g["name"] for g in setting.groups} == {"Sales", "Engineering", "Everyone active"}
    assert "PRIVATE KEY" not in setting.private_key_encrypted


@pytest.mark.django_db
def test_a_refused_account_is_not_stored(business_sandbox):
    from vpp.business_sandbox.testing import new_account

    stranger = new_account()
    with pytest.raises(business.AccountRejected) as caught:
        business.business_account_save(
            client_id=stranger.client_id, key_id=stranger.key_id, private_key=stranger.private_key, actor=None,
            api_base_url=business_sandbox.root_url, token_url=business_sandbox.token_url,
        )  # fmt: skip
    assert "did not accept the API account" in caught.value.reason
    assert not AppleBusinessSetting.load().configured


@pytest.mark.django_db
def test_a_dry_run_comes_first_and_changes_nothing(directory, django_capture_on_commit_callbacks):
    with pytest.raises(business.DirectorySyncBlocked, match="dry run first"):
        business.directory_sync_start(actor=None)

    job = sync(django_capture_on_commit_callbacks, dry_run=True)

    assert (job.action, job.status) == (JobAction.DIRECTORY, JobStatus.DONE)
    assert not User.objects.exists()
    counts = AppleBusinessSetting.load().dry_run_counts
    assert counts["created"] == 59 and counts["people"] == 60  # person 40 is DEACTIVATED: not created
    _, first = person(1)
    assert reasons(job)[f"Ben Adams ({first['managedAppleAccount']})"] == "Would create"
    # and now the real run may start
    assert business.directory_sync_start(actor=None).started


@pytest.mark.django_db
def test_it_creates_updates_and_matches_users_that_existed_before(
    directory, business_sandbox, django_capture_on_commit_callbacks
):
    pid, ben = person(1)
    before = make_user("Benjamin A.", login_id="ben", email=ben["email"].upper(), devices=())
    sync(django_capture_on_commit_callbacks, dry_run=True)

    first = sync(django_capture_on_commit_callbacks)

    assert first.status == JobStatus.DONE
    assert User.objects.count() == 59
    before.refresh_from_db()
    assert before.apple_business_id == pid and before.display_name == "Ben Adams"  # matched by email, then updated
    assert before.login_id == "ben"  # the login is kept
    created = User.objects.get(apple_business_id=person(2)[0])
    assert (created.email, created.employee_number, created.department) == (
        person(2)[1]["email"], "E000002", person(2)[1]["department"],
    )  # fmt: skip
    assert created.managed_apple_account == person(2)[1]["managedAppleAccount"]
    counts = AppleBusinessSetting.load().last_counts
    assert (counts["created"], counts["updated"], counts["failed"]) == (58, 1, 0)

    business_sandbox.people(upsert={person(2)[0]: {"department": "Finance", "lastName": "Berg-Smith"}})
    second = sync(django_capture_on_commit_callbacks)

    created.refresh_from_db()
    assert (created.department, created.display_name) == ("Finance", "Chloe Berg-Smith")
    counts = AppleBusinessSetting.load().last_counts
    assert (counts["created"], counts["updated"], counts["unchanged"]) == (0, 1, 58)
    assert "department: " in reasons(second)[f"Chloe Berg-Smith ({person(2)[1]['managedAppleAccount']})"]
    assert AuditEvent.objects.filter(action="business.sync_finished", job=second).exists()


@pytest.mark.django_db
def test_devices_are_updated_by_serial_number(directory, django_capture_on_commit_callbacks):
    owner = make_user("Device Owner", devices=[(Platform.IOS, ActivationState.ACTIVATED)])
    Device.objects.filter(user=owner).update(serial_number="C0DEMO000002", model="old")
    sync(django_capture_on_commit_callbacks, dry_run=True)
    assert Device.objects.get(serial_number="C0DEMO000002").model == "old"  # the dry run wrote nothing

    sync(django_capture_on_commit_callbacks)

    device = Device.objects.get(serial_number="C0DEMO000002")
    assert (device.model, device.platform, device.org_status) == ("MacBook Air (M3)", Platform.MACOS, "ASSIGNED")
    counts = AppleBusinessSetting.load().last_counts
    assert (counts["devices"], counts["devices_updated"], counts["devices_unknown"]) == (60, 1, 59)
    owner.refresh_from_db()
    assert owner.has_macos and not owner.has_ios


@pytest.mark.django_db
def test_only_the_chosen_groups_are_synced(directory, django_capture_on_commit_callbacks):
    setting = AppleBusinessSetting.load()
    sales = next(g["id"] for g in setting.groups if g["name"] == "Sales")
    business.business_scope_save(group_ids=[sales], on_schedule=False, actor=None)
    sync(django_capture_on_commit_callbacks, dry_run=True)

    sync(django_capture_on_commit_callbacks)

    departments = set(User.objects.values_list("department", flat=True))
    assert departments == {"Sales"} and User.objects.count() == 11  # 12 Sales people, one DEACTIVATED
    with pytest.raises(business.Refused):
        business.business_scope_save(group_ids=["UG-nope"], on_schedule=False, actor=None)


@pytest.mark.django_db
def test_a_refused_account_stops_the_job_and_shows_on_the_health(
    directory, business_sandbox, django_capture_on_commit_callbacks
):
    sync(django_capture_on_commit_callbacks, dry_run=True)
    business_sandbox.fault(status=403, times=5)

    job = sync(django_capture_on_commit_callbacks)

    assert job.status == JobStatus.FAILED and "role may not read" in job.error
    setting = AppleBusinessSetting.load()
    assert setting.health == TokenHealth.INVALID and setting.last_result == SyncResult.FAILED
    assert setting.running_job_id is None


@pytest.mark.django_db(transaction=True)
def test_people_removed_or_deactivated_there_are_deactivated_here_and_retired_from_vpp(
    directory, business_sandbox, vpp_sandbox, settings
):
    settings.VPP_EVENT_POLL_INTERVAL = 1
    vpp_setting = VppServerSetting.load()
    vpp_setting.api_base_url = vpp_sandbox.base_url
    vpp_setting.save()
    setting_service.token_upload(data=vpp_sandbox.token, actor=None)
    apple = VppClient(vpp_sandbox.token, base_url=vpp_sandbox.base_url)
    removed_id, removed = person(1)
    locked_id, locked = person(3)
    for attrs in (removed, locked):  # VPP users at Apple since before the directory sync
        make_user(f"{attrs['firstName']} {attrs['lastName']}", email=attrs["email"], devices=(),
                  vpp_status=VppUserStatus.INVITED, at_apple=apple)  # fmt: skip
    run_job(business.directory_sync_start(actor=None, dry_run=True).job, None)
    run_job(business.directory_sync_start(actor=None).job, None)
    assert User.objects.filter(apple_business_id__in=[removed_id, locked_id], is_active=True).count() == 2

    business_sandbox.people(delete=[removed_id], upsert={locked_id: {"status": "DEACTIVATED"}})
    job = run_job(business.directory_sync_start(actor=None).job, None)

    gone = User.objects.select_related("vpp_user").filter(apple_business_id__in=[removed_id, locked_id])
    assert [(u.is_active, u.vpp_user.status) for u in gone] == [(False, VppUserStatus.RETIRED)] * 2  # kept, not deleted
    assert AppleBusinessSetting.load().last_counts["deactivated"] == 2
    item_reasons = dict(JobItem.objects.filter(job=job).values_list("user__apple_business_id", "reason"))
    assert item_reasons[removed_id] == "Deactivated: Removed from Apple Business: deactivated here."
    assert item_reasons[locked_id].startswith("Deactivated: ") and "is_active: True → False" in item_reasons[locked_id]
    follow_up = Job.objects.filter(action=JobAction.SYNC_ALL).latest("pk")
    assert follow_up.status == JobStatus.DONE and follow_up.selection["trigger"] == "directory"
    for user in gone:
        cuid = str(user.vpp_user.client_user_id)
        assert all(r["status"] == "Retired" for r in vpp_sandbox.users() if r["clientUserId"] == cuid)
    assert JobItem.objects.filter(job=job, status=ItemStatus.SUCCEEDED, reason__startswith="Deactivated").count() == 2


@pytest.mark.django_db
def test_the_setting_page_saves_the_account_checks_it_and_starts_a_dry_run(
    business_sandbox, settings, admin_client, django_capture_on_commit_callbacks
):
    settings.APPLE_BUSINESS_API_URL, settings.APPLE_BUSINESS_TOKEN_URL = (
        business_sandbox.root_url,
        business_sandbox.token_url,
    )
    settings.APPLE_BUSINESS_REQUESTS_PER_MINUTE = 100_000
    account = business_sandbox.account

    bad = admin_client.post("/setting/apple-business/", {"section": "account", "client_id": "x", "key_id": "y",
                                                          "private_key_text": "garbage"})  # fmt: skip
    assert bad.status_code == 422 and "not a private key" in bad.content.decode()
    assert not AppleBusinessSetting.load().configured

    saved = admin_client.post("/setting/apple-business/", {"section": "account", "client_id": account.client_id,
                              "key_id": account.key_id, "private_key_text": account.private_key})  # fmt: skip
    assert saved.status_code == 302
    page = admin_client.get("/setting/apple-business/").content.decode()
    assert "Example Corp" in page and 'id="business-people">60<' in page and "PRIVATE KEY" not in page
    assert 'id="business-sync" disabled' in page  # a dry run first

    with django_capture_on_commit_callbacks(execute=False):
        admin_client.post("/setting/apple-business/", {"section": "dry_run"})
    job = Job.objects.get(action=JobAction.DIRECTORY)
    assert job.selection["dry_run"] is True


@pytest.mark.django_db
def test_a_person_the_database_refuses_fails_alone(directory, business_sandbox, django_capture_on_commit_callbacks):
    sync(django_capture_on_commit_callbacks, dry_run=True)
    sync(django_capture_on_commit_callbacks)
    taken = person(1)[1]["managedAppleAccount"]  # Apple Business gives person 2 the account person 1 holds here
    business_sandbox.people(
        upsert={person(2)[0]: {"managedAppleAccount": taken}, person(3)[0]: {"department": "Finance"}}
    )

    job = sync(django_capture_on_commit_callbacks)

    assert job.status == JobStatus.DONE and job.failed == 1
    failed = JobItem.objects.get(job=job, status=ItemStatus.FAILED)
    assert "already has this Managed Apple Account" in failed.reason
    assert User.objects.get(apple_business_id=person(3)[0]).department == "Finance"  # the others went on
    assert User.objects.get(apple_business_id=person(2)[0]).managed_apple_account == person(2)[1]["managedAppleAccount"]
    assert AppleBusinessSetting.load().last_result == SyncResult.PARTIAL
