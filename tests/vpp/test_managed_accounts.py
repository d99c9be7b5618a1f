"""Issue 13: silent linking with Managed Apple Accounts, against the sandbox over real HTTP.

Send VPP invitation registers users who have a Managed Apple Account with ``managedAppleId``
(Apple associates them, no message); Apple's 9635 falls back to an invitation when a channel
reaches the user, 9641 fails the user with the other holder named; Convert links invited users
by users/update (never a second create), as a bulk action and after a scheduled sync.
"""

from __future__ import annotations

import pytest
from django.core import mail
from django.urls import reverse

from tests.support.job_loop import run_job
from tests.support.users import make_user
from tests.vpp.test_job_sandbox import start
from users.models import User
from vpp.apple.client import VppClient
from vpp.apple.types import RequestUser
from vpp.content_token import vpp_client
from vpp.jobs.plan import vpp_plan_build
from vpp.models import (
    AuditEvent,
    ItemStatus,
    Job,
    JobAction,
    JobItem,
    JobStatus,
    SyncSchedule,
    VppServerSetting,
    VppUser,
    VppUserStatus,
)
from vpp.services import convert as convert_service

pytestmark = [pytest.mark.django_db, pytest.mark.sandbox]


def items(job):
    return {item.user_id: item for item in JobItem.objects.filter(job=job)}


def apple_record(sandbox, vpp_user):
    cuid = str(vpp_user.client_user_id)
    return next(r for r in reversed(sandbox.users()) if r["clientUserId"] == cuid)


# --------------------------------------------------------------------------- silent linking


def test_users_with_a_managed_apple_account_are_linked_silently(vpp_sandbox, sandbox_setting, user_factory):
    linked = [user_factory(managed_apple_account=f"person{n}@corp.example") for n in range(2)]
    invited = user_factory(email="plain@example.com")

    job = run_job(start(JobAction.INVITE, [*linked, invited]), vpp_client(sandbox_setting))

    assert (job.status, job.succeeded, job.failed) == (JobStatus.DONE, 3, 0)
    results = items(job)
    for user in linked:
        vpp_user = VppUser.objects.get(user=user)
        assert vpp_user.status == VppUserStatus.ASSOCIATED
        assert vpp_user.managed_apple_account == user.managed_apple_account
        assert results[user.pk].reason == "Linked silently with the user's Managed Apple Account; no invitation sent."
        record = apple_record(vpp_sandbox, vpp_user)
        assert record["status"] == "Associated" and not record.get("inviteCode")
    assert [m.to for m in mail.outbox] == [["plain@example.com"]]  # only the one without an account
    assert VppUser.objects.get(user=invited).status == VppUserStatus.INVITED
    assert vpp_sandbox.counters()["users_created"] == 3


def test_the_confirmation_says_how_many_are_linked_and_how_many_invited(client, django_user_model, sandbox_setting):
    from django.contrib.auth.models import Permission

    admin = django_user_model.objects.create_user("inviter", password=None)
    admin.user_permissions.add(Permission.objects.get(codename="invite_vppuser"))
    client.force_login(admin)
    users = [make_user(managed_apple_account=f"m{n}@corp.example", email="") for n in range(2)]
    users += [make_user(email=f"e{n}@example.com") for n in range(3)]

    response = client.post(reverse("jobs:bulk-confirm", args=["invite"]), {"pk": [u.pk for u in users]})

    html = response.content.decode()
    assert "2 will be linked silently" in html
    assert "3 will be invited" in html
    assert "Link 2, invite 3" in html
    # Users with an account need no email: none of them is skipped for "no email address".
    assert "No email address" not in html


def test_an_account_of_another_organisation_falls_back_to_an_invitation(vpp_sandbox, sandbox_setting, user_factory):
    outsider = user_factory(email="outsider@example.com", managed_apple_account="outsider@other-org.example")
    unreachable = user_factory(email="", managed_apple_account="nomail@other-org.example")

    job = run_job(start(JobAction.INVITE, [outsider, unreachable]), vpp_client(sandbox_setting))

    results = items(job)
    fallback = results[outsider.pk]
    assert fallback.status == ItemStatus.SUCCEEDED
    assert "outsider@other-org.example is not an account of this organisation" in fallback.reason
    assert "9635" in fallback.reason and "Invited instead" in fallback.reason
    assert [m.to for m in mail.outbox] == [["outsider@example.com"]]
    vpp_user = VppUser.objects.get(user=outsider)
    assert vpp_user.status == VppUserStatus.INVITED and vpp_user.invite_code
    assert vpp_user.managed_apple_account == ""
    assert apple_record(vpp_sandbox, vpp_user)["status"] == "Registered"

    failed = results[unreachable.pk]
    assert (failed.status, failed.error_number) == (ItemStatus.FAILED, 9635)
    assert "No invitation channel reaches this user" in failed.reason
    assert job.failed == 1 and job.succeeded == 1  # one user's refusal never fails the other


def test_an_account_linked_to_another_vpp_user_fails_with_that_user_named(vpp_sandbox, sandbox_setting, user_factory):
    first = user_factory("Ada Holder", login_id="ada", managed_apple_account="shared@corp.example")
    run_job(start(JobAction.INVITE, [first]), vpp_client(sandbox_setting))
    User.objects.filter(pk=first.pk).update(is_active=False)  # she left; the account went to a successor
    second = user_factory("Bob Successor", managed_apple_account="shared@corp.example")

    job = run_job(start(JobAction.INVITE, [second]), vpp_client(sandbox_setting))

    item = items(job)[second.pk]
    assert (item.status, item.error_number) == (ItemStatus.FAILED, 9641)
    assert item.reason == (
        "Not added to VPP (not a VPP user): Managed Apple Account shared@corp.example is already linked "
        "to another VPP user: Ada Holder (ada) (Apple 9641)."
    )
    assert mail.outbox == []


def test_an_account_linked_at_apple_by_someone_unknown_here_says_so(vpp_sandbox, sandbox_setting, user_factory):
    elsewhere = VppClient(vpp_sandbox.token, base_url=vpp_sandbox.base_url)
    event = elsewhere.create_users([RequestUser("not-ours", managed_apple_id="taken@corp.example")])[0]
    elsewhere.wait_for_event(event, poll_interval=0.05)
    user = user_factory(managed_apple_account="taken@corp.example")

    job = run_job(start(JobAction.INVITE, [user]), vpp_client(sandbox_setting))

    item = items(job)[user.pk]
    assert item.error_number == 9641
    assert "another VPP user not known here" in item.reason


# --------------------------------------------------------------------------- convert


def _invited(sandbox_setting, user_factory, **fields):
    user = user_factory(**fields)
    run_job(start(JobAction.INVITE, [user]), vpp_client(sandbox_setting))
    assert VppUser.objects.get(user=user).status == VppUserStatus.INVITED
    return User.objects.get(pk=user.pk)


def test_convert_links_an_invited_user_by_update_without_a_second_create(vpp_sandbox, sandbox_setting, user_factory):
    user = _invited(sandbox_setting, user_factory, email="late@example.com")
    created = vpp_sandbox.counters()["users_created"]
    user.managed_apple_account = "late@corp.example"
    user.save()

    job = run_job(start(JobAction.CONVERT, [user]), vpp_client(sandbox_setting))

    assert (job.status, job.succeeded) == (JobStatus.DONE, 1), list(JobItem.objects.values("status", "reason"))
    assert (
        items(job)[user.pk].reason
        == "Linked with the user's Managed Apple Account; the invitation is no longer needed."
    )
    vpp_user = VppUser.objects.get(user=user)
    assert vpp_user.status == VppUserStatus.ASSOCIATED and vpp_user.id_hash
    assert vpp_user.managed_apple_account == "late@corp.example"
    counters = vpp_sandbox.counters()
    assert counters["users_created"] == created  # no second create
    assert counters["endpoints"].get("POST /mdm/v2/users/update") == 1
    audit = AuditEvent.objects.get(job=job, action="vpp.convert")
    assert audit.target_summary == "Link Managed Apple Accounts of 1 selected user"


def test_convert_refused_by_apple_keeps_the_invitation(vpp_sandbox, sandbox_setting, user_factory):
    user = _invited(sandbox_setting, user_factory, email="keep@example.com")
    code = VppUser.objects.get(user=user).invite_code
    user.managed_apple_account = "keep@other-org.example"
    user.save()

    job = run_job(start(JobAction.CONVERT, [user]), vpp_client(sandbox_setting))

    item = items(job)[user.pk]
    assert (item.status, item.error_number) == (ItemStatus.FAILED, 9635)
    assert "not an account of this organisation" in item.reason and "The invitation stays valid." in item.reason
    vpp_user = VppUser.objects.get(user=user)
    assert (vpp_user.status, vpp_user.invite_code, vpp_user.managed_apple_account) == (VppUserStatus.INVITED, code, "")
    assert apple_record(vpp_sandbox, vpp_user)["status"] == "Registered"


def test_convert_skips_users_it_cannot_link(sandbox_setting, user_factory):
    no_account = user_factory(vpp_status=VppUserStatus.INVITED, vpp_fields={"invite_code": "c1"})
    associated = user_factory(managed_apple_account="a@corp.example", vpp_status=VppUserStatus.ASSOCIATED)
    never = user_factory(managed_apple_account="n@corp.example")
    plan = vpp_plan_build(
        action=JobAction.CONVERT, users=User.objects.filter(pk__in=[no_account.pk, associated.pk, never.pk])
    )
    reasons = {row.user_id: row.skip_reason for row in plan.rows}
    assert reasons == {no_account.pk: "no_managed_account", associated.pk: "associated", never.pk: "not_vpp"}


def _finished_scheduled_sync() -> Job:
    job = Job.objects.create(action=JobAction.SYNC_ALL, status=JobStatus.DONE, selection={"trigger": "schedule"})
    SyncSchedule.load()
    SyncSchedule.objects.filter(pk=1).update(last_job_id=job.pk)
    return job


def test_the_scheduled_sync_links_convertible_users_once_when_enabled(vpp_sandbox, sandbox_setting, user_factory):
    user = _invited(sandbox_setting, user_factory, email="sync@example.com")
    user.managed_apple_account = "sync@corp.example"
    user.save()
    _finished_scheduled_sync()

    assert convert_service.convert_tick() is None  # off by default
    VppServerSetting.objects.filter(pk=1).update(convert_during_sync=True)
    job = convert_service.convert_tick()
    assert job is not None and job.action == JobAction.CONVERT
    assert convert_service.convert_tick() is None  # a redelivered tick: nothing twice

    job = run_job(job, vpp_client(sandbox_setting))
    assert job.succeeded == 1
    assert VppUser.objects.get(user=user).status == VppUserStatus.ASSOCIATED


def test_an_account_added_after_the_confirmation_asks_for_it_again(client, django_user_model, token_setting):
    from django.contrib.auth.models import Permission

    from tests.vpp.test_bulk_views import plan_token_of, post

    admin = django_user_model.objects.create_user("confirmer", password=None)
    admin.user_permissions.add(Permission.objects.get(codename="invite_vppuser"))
    client.force_login(admin)
    user = make_user(email="later@example.com")
    token = plan_token_of(post(client, "invite", {"pk": [user.pk]}))  # confirmed: 1 invited
    User.objects.filter(pk=user.pk).update(managed_apple_account="later@corp.example")

    response = post(client, "invite", {"pk": [user.pk], "plan": token}, step="apply")

    assert response.status_code == 409
    assert "1 will be linked silently" in response.content.decode()
    assert not Job.objects.exists()
