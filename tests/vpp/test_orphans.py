"""Issue 11.5: orphan Apple users that block invitations, retired or adopted from the sync result
page as jobs on the one job engine (sandbox over real HTTP)."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from tests.support.job_loop import run_job
from tests.support.users import make_user
from users.models import User
from users.selectors import UserSelection
from vpp.apple.client import VppClient
from vpp.apple.types import RequestUser
from vpp.jobs.engine import job_create
from vpp.jobs.plan import vpp_plan_build
from vpp.models import AuditEvent, JobAction, JobStatus, SyncOrphan, VppUser, VppUserStatus
from vpp.selectors import orphan_adopt_candidates
from vpp.services import orphans as orphan_service
from vpp.services import sync as sync_service
from vpp.users_table import vpp_status_cell

pytestmark = [pytest.mark.django_db, pytest.mark.sandbox]


def left_by_earlier_mdm(vpp_sandbox, *, email: str, account: str) -> str:
    """A user an earlier MDM created in the sandbox_unit, Associated with ``account`` (an Apple Account)."""
    earlier = VppClient(vpp_sandbox.token, base_url=vpp_sandbox.base_url)
    cuid = str(uuid.uuid4())
    (event,) = earlier.create_users([RequestUser(cuid, email=email)])
    earlier.wait_for_event(event, poll_interval=0.05)
    record = next(r for r in vpp_sandbox.users() if r["clientUserId"] == cuid)
    assert vpp_sandbox.accept_invitation(record["inviteCode"], account)["outcome"] == "accepted"
    return cuid


def full_sync(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        started = sync_service.sync_start(actor=None, trigger="manual")
    return run_job(started.job, None)


def invite(users):
    plan = vpp_plan_build(
        action=JobAction.INVITE, users=User.objects.filter(pk__in=[u.pk for u in users]), channel="email"
    )
    return run_job(job_create(plan=plan, actor=None, selection=UserSelection(ids=tuple(u.pk for u in users))), None)


def act(django_capture_on_commit_callbacks, sync_job, orphan_ids, adopt=None):
    plan = orphan_service.orphan_plan_build(run_job_id=sync_job.pk, orphan_ids=orphan_ids, adopt=adopt or {})
    with django_capture_on_commit_callbacks(execute=False):
        job = orphan_service.orphans_act(plan=plan, run_job_id=sync_job.pk, actor=None)
    return run_job(job, None)


def test_retiring_the_orphan_lets_the_blocked_invitation_complete(
    vpp_sandbox, sandbox_unit, django_capture_on_commit_callbacks
):
    # The earlier MDM had Ada's mailbox on it: the link kmconsole can see (Apple's idHash needs an acceptance).
    orphan_id = left_by_earlier_mdm(vpp_sandbox, email="ada@example.com", account="ada@icloud.example")
    ada = make_user("Ada", login_id="ada", email="ada@example.com")
    assert invite([ada]).succeeded == 1
    ada.vpp_user.refresh_from_db()

    # Ada accepts with the Apple Account the orphan holds: Apple keeps her invitation open.
    assert vpp_sandbox.accept_invitation(ada.vpp_user.invite_code, "ada@icloud.example")["outcome"] == "taken"
    sync_job = full_sync(django_capture_on_commit_callbacks)
    ada.vpp_user.refresh_from_db()
    assert ada.vpp_user.status == VppUserStatus.INVITED
    assert ada.vpp_user.last_error_message.startswith("Still invited: another VPP user")  # not a silent "Invited"
    assert orphan_id in ada.vpp_user.last_error_message
    assert "Apple Account in use by another VPP user?" in vpp_status_cell(
        {"vpp_status": ada.vpp_user.status, "vpp_error": ada.vpp_user.last_error_message}
    )
    orphan = SyncOrphan.objects.get(run__job=sync_job)
    assert (orphan.client_user_id, orphan.apple_status) == (orphan_id, "Associated") and orphan.id_hash

    job = act(django_capture_on_commit_callbacks, sync_job, [orphan.pk])

    assert (job.status, job.succeeded, job.failed) == (JobStatus.DONE, 1, 0)
    record = next(r for r in vpp_sandbox.users() if r["clientUserId"] == orphan_id)
    assert record["status"] == "Retired"
    assert not [a for a in vpp_sandbox.state("assignments") if a.get("clientUserId") == orphan_id]  # revoked first
    kept = VppUser.objects.get(client_user_id=orphan_id)
    assert (kept.user, kept.status) == (None, VppUserStatus.RETIRED)  # history, not an orphan any more
    assert AuditEvent.objects.filter(action="vpp.orphans", job=job).exists()

    # A new acceptance completes.
    assert vpp_sandbox.accept_invitation(ada.vpp_user.invite_code, "ada@icloud.example")["outcome"] == "accepted"
    sync_job = full_sync(django_capture_on_commit_callbacks)
    ada.vpp_user.refresh_from_db()
    assert ada.vpp_user.status == VppUserStatus.ASSOCIATED and ada.vpp_user.last_error_message == ""
    assert not SyncOrphan.objects.filter(run__job=sync_job).exists()


def test_an_orphan_is_adopted_as_the_vpp_user_of_the_device_user_with_its_email(
    vpp_sandbox, sandbox_unit, django_capture_on_commit_callbacks
):
    orphan_id = left_by_earlier_mdm(vpp_sandbox, email="bob@example.com", account="bob@icloud.example")
    bob = make_user("Bob", login_id="bob", email="Bob@example.com")
    sync_job = full_sync(django_capture_on_commit_callbacks)
    orphan = SyncOrphan.objects.get(run__job=sync_job)
    assert orphan_adopt_candidates([orphan]) == {orphan.pk: bob}
    writes = vpp_sandbox.counters()["users_created"]

    job = act(django_capture_on_commit_callbacks, sync_job, [orphan.pk], adopt={orphan.pk: bob.pk})

    assert (job.status, job.succeeded) == (JobStatus.DONE, 1)
    bob.refresh_from_db()
    assert str(bob.vpp_user.client_user_id) == orphan_id
    assert bob.vpp_user.status == VppUserStatus.ASSOCIATED and bob.vpp_user.id_hash
    assert vpp_sandbox.counters()["users_created"] == writes  # nothing created at Apple
    sync_job = full_sync(django_capture_on_commit_callbacks)
    assert not SyncOrphan.objects.filter(run__job=sync_job).exists()
    plan = vpp_plan_build(action=JobAction.INVITE, users=User.objects.filter(pk=bob.pk), channel="email")
    assert [row.skip_reason for row in plan.rows] == ["associated"]


def test_an_orphan_gone_from_apple_since_the_sync_is_not_adopted(
    vpp_sandbox, sandbox_unit, django_capture_on_commit_callbacks
):
    orphan_id = left_by_earlier_mdm(vpp_sandbox, email="cy@example.com", account="cy@icloud.example")
    cy = make_user("Cy", login_id="cy", email="cy@example.com")
    sync_job = full_sync(django_capture_on_commit_callbacks)
    orphan = SyncOrphan.objects.get(run__job=sync_job)
    earlier = VppClient(vpp_sandbox.token, base_url=vpp_sandbox.base_url)
    earlier.wait_for_event(earlier.retire_users([orphan_id])[0], poll_interval=0.05)

    job = act(django_capture_on_commit_callbacks, sync_job, [orphan.pk], adopt={orphan.pk: cy.pk})

    assert (job.status, job.failed) == (JobStatus.DONE, 1)
    assert "no longer has this user" in job.items.get().reason
    assert not VppUser.objects.filter(user=cy).exists()


def test_the_plan_says_why_an_orphan_cannot_be_adopted(vpp_sandbox, sandbox_unit, django_capture_on_commit_callbacks):
    first = left_by_earlier_mdm(vpp_sandbox, email="d1@example.com", account="d1@icloud.example")
    left_by_earlier_mdm(vpp_sandbox, email="d2@example.com", account="d2@icloud.example")
    dee = make_user("Dee", login_id="dee", email="dee@example.com")
    apple = VppClient(vpp_sandbox.token, base_url=vpp_sandbox.base_url)
    invited = make_user("Eve", login_id="eve", vpp_status=VppUserStatus.INVITED, at_apple=apple)
    sync_job = full_sync(django_capture_on_commit_callbacks)
    o1, o2 = SyncOrphan.objects.filter(run__job=sync_job).order_by("id")
    if o1.client_user_id != first:
        o1, o2 = o2, o1

    plan = orphan_service.orphan_plan_build(
        run_job_id=sync_job.pk, orphan_ids=[o1.pk, o2.pk], adopt={o1.pk: dee.pk, o2.pk: dee.pk}
    )
    assert [row.problem for row in plan.rows] == ["", orphan_service.CHOSEN_TWICE]
    plan = orphan_service.orphan_plan_build(run_job_id=sync_job.pk, orphan_ids=[o1.pk], adopt={o1.pk: invited.pk})
    assert "already has a VPP user (invited)" in plan.rows[0].problem
    with pytest.raises(orphan_service.OrphansRefused, match="already has a VPP user"):
        orphan_service.orphans_act(plan=plan, run_job_id=sync_job.pk, actor=None)
    assert not VppUser.objects.filter(client_user_id=first).exists()  # nothing written


def test_the_sync_result_page_confirms_before_retiring(
    client, django_user_model, vpp_sandbox, sandbox_unit, django_capture_on_commit_callbacks
):
    admin = django_user_model.objects.create_user("admin", password=None)
    admin.user_permissions.add(Permission.objects.get(codename="delete_vppuser"))
    client.force_login(admin)
    orphan_id = left_by_earlier_mdm(vpp_sandbox, email="fay@example.com", account="fay@icloud.example")
    sync_job = full_sync(django_capture_on_commit_callbacks)
    orphan = SyncOrphan.objects.get(run__job=sync_job)

    page = client.get(reverse("jobs:detail", args=[sync_job.pk])).content.decode()
    assert 'id="orphans-form"' in page and f'name="do_{orphan.pk}"' in page

    confirm = client.post(reverse("jobs:orphans-confirm", args=[sync_job.pk]), {f"do_{orphan.pk}": "retire"})
    assert confirm.status_code == 200 and "Retire at Apple (1)" in confirm.content.decode()
    assert not VppUser.objects.filter(client_user_id=orphan_id).exists()

    unticked = client.post(reverse("jobs:orphans-apply", args=[sync_job.pk]), {f"do_{orphan.pk}": "retire"})
    assert unticked.status_code == 422 and "Tick the box" in unticked.content.decode()

    with django_capture_on_commit_callbacks(execute=False):
        done = client.post(
            reverse("jobs:orphans-apply", args=[sync_job.pk]), {f"do_{orphan.pk}": "retire", "understood": "yes"}
        )
    assert done.status_code == 302
    event = AuditEvent.objects.get(action="vpp.orphans")
    assert event.actor == admin and "Retire 1 orphan Apple user at Apple" in event.target_summary


def test_a_selection_sync_gives_a_blocked_invitation_its_reason_too(vpp_sandbox, sandbox_unit):
    # Two device users share a mailbox; the first accepted with the family's Apple Account.
    apple = VppClient(vpp_sandbox.token, base_url=vpp_sandbox.base_url)
    first = make_user("Sam One", email="family@example.com", vpp_status=VppUserStatus.INVITED, at_apple=apple)
    second = make_user("Sam Two", email="family@example.com", vpp_status=VppUserStatus.INVITED, at_apple=apple)
    codes = {r["clientUserId"]: r["inviteCode"] for r in vpp_sandbox.users()}
    vpp_sandbox.accept_invitation(codes[str(first.vpp_user.client_user_id)], "family@icloud.example")
    taken = vpp_sandbox.accept_invitation(codes[str(second.vpp_user.client_user_id)], "family@icloud.example")
    assert taken["outcome"] == "taken"

    plan = vpp_plan_build(action=JobAction.SYNC, users=User.objects.filter(pk__in=[first.pk, second.pk]))
    run_job(job_create(plan=plan, actor=None, selection=UserSelection(ids=(first.pk, second.pk))), None)

    first.vpp_user.refresh_from_db()
    second.vpp_user.refresh_from_db()
    assert first.vpp_user.status == VppUserStatus.ASSOCIATED and first.vpp_user.last_error_message == ""
    assert second.vpp_user.status == VppUserStatus.INVITED
    assert (
        second.vpp_user.last_error_message.startswith("Still invited:")
        and "Sam One" in second.vpp_user.last_error_message
    )
