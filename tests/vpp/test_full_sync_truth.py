"""The full sync's per-user truth against the sandbox over HTTP (issue 11: 1, 2, 6, 9 and 10.5).

A step that fails for some users never stops the sync; an active record wins over retired history
whatever the page order; every change the sync made to a user is in its results.
"""

from __future__ import annotations

import pytest

from tests.support.job_loop import run_job
from users.models import User
from vpp.apple.types import RequestUser
from vpp.models import ItemStatus, JobItem, JobStatus, SyncOrphan, SyncResult, SyncSchedule, VppUser, VppUserStatus
from vpp.services import sync as sync_service

from .test_full_sync import apple, apple_record, vpp_user_named  # noqa: F401 - the fixture and helpers

pytestmark = [pytest.mark.sandbox, pytest.mark.django_db]

REFUSED = "refused@example.com"


def run_sync(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        started = sync_service.sync_start(actor=None, trigger="manual")
    assert started.started
    return run_job(started.job, None)


def item_of(job, vpp_user) -> JobItem:
    return JobItem.objects.get(job=job, vpp_user=vpp_user)


def wait(apple, event_ids):  # noqa: F811
    for event_id in event_ids:
        apple.wait_for_event(event_id, poll_interval=0.05)


def test_a_push_refused_for_one_user_records_it_and_still_reads_apples_users(
    apple,  # noqa: F811
    vpp_sandbox,
    django_capture_on_commit_callbacks,
):
    refused, moved, accepted = (vpp_user_named(apple, name) for name in ("Rae", "Sam", "Tia"))
    User.objects.filter(pk=refused.user_id).update(email=REFUSED)
    User.objects.filter(pk=moved.user_id).update(email="sam.new@example.com")
    vpp_sandbox.accept_invitation(apple_record(vpp_sandbox, accepted)["inviteCode"], "tia@icloud.example")
    vpp_sandbox.control(refuse_emails=[REFUSED])

    job = run_sync(django_capture_on_commit_callbacks)

    assert job.status == JobStatus.DONE
    assert SyncSchedule.load().last_result == SyncResult.PARTIAL
    failed = item_of(job, refused)
    assert (failed.status, failed.error_number) == (ItemStatus.FAILED, 9717)
    assert failed.reason.startswith("Apple rejected the user's e-mail address as invalid.")
    assert "The next full sync tries again" in failed.reason  # a sync job has no "Retry failed only"
    assert apple_record(vpp_sandbox, moved)["email"] == "sam.new@example.com"
    # ... and the sync went on to read Apple's users.
    assert VppUser.objects.get(pk=accepted.pk).status == VppUserStatus.ASSOCIATED
    assert job.sync_run.counts["failed"] == 1


def test_a_user_whose_create_never_reached_apple_does_not_fail_every_sync(
    apple,  # noqa: F811
    vpp_sandbox,
    django_capture_on_commit_callbacks,
):
    pending = vpp_user_named(apple, "Pia", at_apple=False)
    VppUser.objects.filter(pk=pending.pk).update(status=VppUserStatus.PENDING, apple_email="")

    job = run_sync(django_capture_on_commit_callbacks)

    assert (job.status, job.failed) == (JobStatus.DONE, 0), list(JobItem.objects.values("reason"))
    assert SyncSchedule.load().last_result == SyncResult.SUCCEEDED


def invited_retired_invited(apple, vpp_sandbox) -> tuple[VppUser, VppUser]:  # noqa: F811
    """Ann invited, deleted from VPP, invited again (Apple: her retired record, Ben's, her active one,
    in that order); Ben invited in between. Returns (Ann, Ben)."""
    again = vpp_user_named(apple, "Ann")
    cuid = str(again.client_user_id)
    wait(apple, apple.retire_users([cuid]))  # Delete from VPP ...
    other = vpp_user_named(apple, "Ben")
    wait(apple, apple.create_users([RequestUser(cuid, email=again.apple_email)]))  # ... and invite again
    code = next(r["inviteCode"] for r in vpp_sandbox.users() if r["clientUserId"] == cuid and r["status"] != "Retired")
    VppUser.objects.filter(pk=again.pk).update(invite_code=code)
    return again, other


def test_an_active_record_wins_over_retired_history_whatever_the_page_order(
    apple,  # noqa: F811
    vpp_sandbox,
    django_capture_on_commit_callbacks,
):
    again, changed = invited_retired_invited(apple, vpp_sandbox)
    vpp_sandbox.accept_invitation(apple_record(vpp_sandbox, changed)["inviteCode"], "ben@icloud.example")
    vpp_sandbox.control(page_size=1)  # Ann's retired record is on page 0, her active one on page 2

    job = run_sync(django_capture_on_commit_callbacks)

    counts = job.sync_run.counts
    assert (counts["status_changed"], counts["retired_by_apple"]) == (1, 0)
    assert VppUser.objects.get(pk=again.pk).status == VppUserStatus.INVITED
    assert not JobItem.objects.filter(job=job, vpp_user=again).exists()
    assert item_of(job, changed).reason == "Was invited here; Apple says associated."


def test_a_listing_that_stops_midway_retires_nobody(
    apple,  # noqa: F811
    vpp_sandbox,
    django_capture_on_commit_callbacks,
):
    again, _ = invited_retired_invited(apple, vpp_sandbox)
    vpp_sandbox.control(
        page_size=1, inject_errors=[{"number": 9602, "path": "/users", "after": 1}]
    )  # the second page request fails

    job = run_sync(django_capture_on_commit_callbacks)

    assert job.status == JobStatus.FAILED
    assert VppUser.objects.get(pk=again.pk).status == VppUserStatus.INVITED


def test_every_change_the_sync_made_to_a_user_is_in_its_result(
    apple,  # noqa: F811
    vpp_sandbox,
    django_capture_on_commit_callbacks,
):
    both = vpp_user_named(apple, "Bea")
    vpp_sandbox.accept_invitation(apple_record(vpp_sandbox, both)["inviteCode"], "bea@icloud.example")
    User.objects.filter(pk=both.user_id).update(email="bea.new@example.com")

    job = run_sync(django_capture_on_commit_callbacks)

    reason = item_of(job, both).reason
    assert "New email sent to Apple." in reason and "Was invited here; Apple says associated." in reason
    assert job.sync_run.counts["status_changed"] == 1


def test_users_another_mdm_created_are_orphans_and_bare_pages_are_read(
    apple,  # noqa: F811
    vpp_sandbox,
    django_capture_on_commit_callbacks,
    admin_client,
):
    ours = vpp_user_named(apple, "Cam")
    wait(apple, apple.create_users([RequestUser("OTHER-MDM-0042", email="x@example.com")]))
    vpp_sandbox.accept_invitation(apple_record(vpp_sandbox, ours)["inviteCode"], "cam@icloud.example")
    vpp_sandbox.control(bare_list_bodies=True)  # no currentPageIndex / totalPages / nextPageIndex

    job = run_sync(django_capture_on_commit_callbacks)

    assert job.status == JobStatus.DONE
    assert list(SyncOrphan.objects.filter(run=job.sync_run).values_list("client_user_id", flat=True)) == [
        "OTHER-MDM-0042"
    ]
    stored = VppUser.objects.get(pk=ours.pk)
    assert stored.id_hash == apple_record(vpp_sandbox, ours)["idHash"] and stored.id_hash.endswith("=")
    page = admin_client.get(f"/vpp/jobs/{job.pk}/").content.decode()  # the sync's result page
    assert "<code>OTHER-MDM-0042</code>" in page


def test_a_departed_user_already_retired_at_apple_is_a_success(
    apple,  # noqa: F811
    vpp_sandbox,
    django_capture_on_commit_callbacks,
):
    gone = vpp_user_named(apple, "Dot")
    wait(apple, apple.retire_users([str(gone.client_user_id)]))  # an earlier run's answer was lost
    User.objects.filter(pk=gone.user_id).update(is_active=False)

    job = run_sync(django_capture_on_commit_callbacks)

    item = item_of(job, gone)
    assert (item.status, item.error_number) == (ItemStatus.SUCCEEDED, None)
    assert item.reason.startswith("Already retired at Apple")
    assert VppUser.objects.get(pk=gone.pk).status == VppUserStatus.RETIRED


def test_a_push_whose_event_apple_forgot_is_done_again_next_time_and_the_sync_reads_on(
    apple,  # noqa: F811
    vpp_sandbox,
    django_capture_on_commit_callbacks,
):
    moved, accepted = vpp_user_named(apple, "Ivy"), vpp_user_named(apple, "Jo")
    User.objects.filter(pk=moved.user_id).update(email="ivy.new@example.com")
    vpp_sandbox.accept_invitation(apple_record(vpp_sandbox, accepted)["inviteCode"], "jo@icloud.example")
    vpp_sandbox.control(inject_errors=[{"number": 9708, "path": "/status"}])

    job = run_sync(django_capture_on_commit_callbacks)

    assert job.status == JobStatus.DONE
    item = item_of(job, moved)
    assert (item.status, item.error_number) == (ItemStatus.FAILED, 9708)
    assert "The next full sync tries again" in item.reason
    assert VppUser.objects.get(pk=accepted.pk).status == VppUserStatus.ASSOCIATED


def test_a_user_whose_push_failed_and_who_is_absent_from_apple_has_both_in_its_result(
    apple,  # noqa: F811
    vpp_sandbox,
    django_capture_on_commit_callbacks,
):
    gone = vpp_user_named(apple, "Gus", at_apple=False)  # invited here, unknown at Apple
    User.objects.filter(pk=gone.user_id).update(email="gus.new@example.com")

    job = run_sync(django_capture_on_commit_callbacks)

    item = item_of(job, gone)
    assert item.error_number == 9609  # the push: Apple could not find this user
    assert "absent from Apple's complete listing" in item.reason  # the read: no longer a VPP user
    assert VppUser.objects.get(pk=gone.pk).status == VppUserStatus.RETIRED
