"""Services end to end against an in-memory Apple (fast); tests/vpp/test_worker.py does it for real."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail

from tests.support.job_loop import JobLoop, run_job
from users.models import User
from users.selectors import UserSelection
from vpp.apple.errors import RateLimitedError, TokenExpiredError
from vpp.jobs.engine import job_create, job_retry_failed
from vpp.jobs.plan import vpp_plan_build
from vpp.models import (
    AuditEvent,
    InvitationDelivery,
    ItemStatus,
    JobAction,
    JobItem,
    JobStatus,
    VppUser,
    VppUserStatus,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast(settings):
    settings.VPP_EVENT_POLL_INTERVAL = 0
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


def start(action, users, channel="email", actor=None):
    plan = vpp_plan_build(action=action, users=User.objects.filter(pk__in=[u.pk for u in users]), channel=channel)
    return job_create(plan=plan, actor=actor, selection=UserSelection(ids=tuple(u.pk for u in users)), ip="127.0.0.1")


def test_it_invites_users_and_emails_the_link(apple, token_setting, user_factory):
    users = [user_factory() for _ in range(3)]
    job = run_job(start(JobAction.INVITE, users), apple)
    assert job.status == JobStatus.DONE
    assert (job.succeeded, job.failed, job.skipped) == (3, 0, 0)
    for user in users:
        vpp_user = VppUser.objects.get(user=user)
        assert vpp_user.status == VppUserStatus.INVITED
        assert vpp_user.invite_code.startswith("code")
        assert vpp_user.invitation_count == 1
    assert len(mail.outbox) == 3
    message = mail.outbox[0]
    code = VppUser.objects.get(user__email=message.to[0]).invite_code
    assert f"inviteCode={code}&mt=8" in message.body
    assert f"inviteCode={code}&amp;mt=8" in message.alternatives[0][0]
    assert apple.count("create_users") == 1
    assert AuditEvent.objects.filter(job=job, action="vpp.invite").count() == 1


def test_it_batches_creates_by_max_users_and_reads_codes_in_one_listing(apple, token_setting, user_factory):
    apple.max_users = 4
    users = [user_factory() for _ in range(10)]
    job = run_job(start(JobAction.INVITE, users), apple)
    assert job.succeeded == 10
    assert apple.count("create_users") == 3
    assert apple.count("get_user") == 0
    # the versionId at job start (the read-back watermark), then one delta listing from it
    assert apple.count("iter_users") == 2


def test_it_reinvites_without_a_second_create_and_recreates_retired_users(apple, token_setting, user_factory):
    invited, retired = user_factory(), user_factory()
    run_job(start(JobAction.INVITE, [invited, retired]), apple)
    run_job(start(JobAction.DELETE, [retired]), apple)
    assert VppUser.objects.get(user=retired).status == VppUserStatus.RETIRED
    creates_before = apple.count("create_users")
    mail.outbox.clear()

    job = run_job(start(JobAction.INVITE, [invited, retired]), apple)
    assert job.succeeded == 2
    assert apple.count("create_users") == creates_before + 1  # only the retired one
    assert len(mail.outbox) == 2
    assert VppUser.objects.get(user=invited).invitation_count == 2
    assert VppUser.objects.get(user=retired).status == VppUserStatus.INVITED


def test_it_never_creates_twice_when_a_create_may_have_reached_apple(apple, token_setting, user_factory):
    user = user_factory()
    job = start(JobAction.INVITE, [user])
    vpp_user = VppUser.objects.get(user=user)
    # A worker sent the create, Apple made the user, and the worker died before storing the event.
    from django.utils import timezone

    from vpp.apple.types import RequestUser

    apple.create_users([RequestUser(str(vpp_user.client_user_id), user.email)])
    JobItem.objects.filter(job=job).update(request_sent_at=timezone.now())
    job = run_job(job, apple)
    assert job.succeeded == 1
    assert apple.count("create_users") == 1


def test_it_treats_9716_already_exists_as_created(apple, token_setting, user_factory):
    user = user_factory()
    job = start(JobAction.INVITE, [user])
    from vpp.apple.types import RequestUser

    apple.create_users([RequestUser(str(VppUser.objects.get(user=user).client_user_id), user.email)])
    job = run_job(job, apple)
    assert job.succeeded == 1
    assert VppUser.objects.get(user=user).status == VppUserStatus.INVITED


def test_it_sends_an_invitation_once_per_job_even_if_the_deliver_step_runs_again(apple, token_setting, user_factory):
    user = user_factory()
    job = run_job(start(JobAction.INVITE, [user]), apple)
    assert len(mail.outbox) == 1
    # Replay the deliver step as a redelivered message would.
    JobItem.objects.filter(job=job).update(status=ItemStatus.PENDING, step="deliver")
    from vpp.models import Job

    Job.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING, phase="invite")
    run_job(job, apple)
    assert len(mail.outbox) == 1
    assert InvitationDelivery.objects.filter(job=job).count() == 1


def test_it_reports_per_user_failures_with_apple_error(apple, token_setting, user_factory):
    ok, bad = user_factory(), user_factory()
    job = start(JobAction.INVITE, [ok, bad])
    apple.refuse[str(VppUser.objects.get(user=bad).client_user_id)] = (9603, "Internal error")
    job = run_job(job, apple)
    assert (job.succeeded, job.failed) == (1, 1)
    item = JobItem.objects.get(job=job, user=bad)
    assert item.error_number == 9603
    assert item.reason.startswith("Not added to VPP (not a VPP user): Internal error")
    assert "Retry failed only" in item.reason and "retried later" not in item.reason
    # A failed create leaves the user as before: not a VPP user (no row, so never "pending" for ever).
    assert not VppUser.objects.filter(user=bad).exists()


def test_it_deletes_revoking_licences_then_retiring(apple, token_setting, user_factory):
    users = [user_factory() for _ in range(3)]
    run_job(start(JobAction.INVITE, users), apple)
    for user in users:
        apple.assignments[str(VppUser.objects.get(user=user).client_user_id)] = 2
    job = run_job(start(JobAction.DELETE, users), apple)
    assert job.succeeded == 3
    assert apple.assignments == {}
    assert apple.calls.index("revoke_assets") < apple.calls.index("retire_users")
    assert set(VppUser.objects.values_list("status", flat=True)) == {VppUserStatus.RETIRED}


def test_it_reports_users_apple_does_not_know_on_delete(apple, token_setting, user_factory):
    user = user_factory()
    VppUser.objects.create(user=user, status=VppUserStatus.INVITED, invite_code="x")
    job = run_job(start(JobAction.DELETE, [user]), apple)
    item = JobItem.objects.get(job=job)
    assert item.status == ItemStatus.SUCCEEDED
    assert "no record" in item.reason


def test_it_syncs_accepted_users_and_changed_emails(apple, token_setting, user_factory):
    users = [user_factory() for _ in range(2)]
    run_job(start(JobAction.INVITE, users), apple)
    accepted = VppUser.objects.get(user=users[0])
    apple.accept(str(accepted.client_user_id))
    User.objects.filter(pk=users[1].pk).update(email="new@example.com")
    job = run_job(start(JobAction.SYNC, users), apple)
    assert job.succeeded == 2
    accepted.refresh_from_db()
    assert accepted.status == VppUserStatus.ASSOCIATED
    assert accepted.id_hash
    assert "Apple says Associated" in JobItem.objects.get(job=job, user=users[0]).reason
    other = VppUser.objects.get(user=users[1])
    assert other.apple_email == "new@example.com"
    assert apple.users[str(other.client_user_id)].email == "new@example.com"


def test_it_fails_the_whole_job_when_the_token_expires_mid_job(apple, token_setting, user_factory):
    users = [user_factory() for _ in range(3)]
    job = start(JobAction.INVITE, users)
    apple.fail_next = [None] if False else []
    apple.fail_next.append(TokenExpiredError("The content token has expired.", error_number=9621, http_status=401))
    job = run_job(job, apple)
    assert job.status == JobStatus.FAILED
    assert "expired" in job.error
    assert set(JobItem.objects.filter(job=job).values_list("status", flat=True)) == {ItemStatus.FAILED}
    token_setting.refresh_from_db()
    assert token_setting.token_health == "expired"


def test_it_honours_retry_after_and_then_finishes(apple, token_setting, user_factory, monkeypatch):
    from vpp.jobs import engine as jobs

    users = [user_factory() for _ in range(2)]
    job = start(JobAction.INVITE, users)
    apple.fail_next = [None]  # the versionId read succeeds...
    apple.fail_next = []
    seen = []
    real = jobs.job_process_chunk

    def spy(**kwargs):
        try:
            return real(**kwargs)
        except jobs.JobDeferred as deferred:
            from vpp.models import Job

            seen.append((deferred.countdown, Job.objects.get(pk=job.pk).retry_after_until))
            raise

    monkeypatch.setattr(jobs, "job_process_chunk", spy)
    apple.iter_users  # noqa: B018
    original_create = apple.create_users
    calls = {"n": 0}

    def create_once_limited(users_):
        calls["n"] += 1
        if calls["n"] == 1:
            apple.calls.append("create_users")
            raise RateLimitedError("Too many requests", error_number=9646, http_status=429, retry_after=42)
        return original_create(users_)

    apple.create_users = create_once_limited
    loop = JobLoop(apple)
    job = loop.run(job)
    assert job.status == JobStatus.DONE and job.succeeded == 2
    assert seen and seen[0][0] == 42 and seen[0][1] is not None
    assert len(apple.users) == 2
    # vpp/tasks.py put the chunk back with Apple's wait as the countdown (job_chunk's retry)
    assert [(m.task, m.options["countdown"]) for m in loop.published if m.options.get("retries")] == [
        ("vpp.job_chunk", 42)
    ]


def test_a_wait_longer_than_the_broker_may_hold_is_capped_in_the_retry(apple, token_setting, user_factory):
    # Apple's Retry-After goes into the job; the chunk's retry waits at most MAX_COUNTDOWN
    # (a broker ETA beyond its visibility timeout would be redelivered early).
    from vpp import tasks

    user = user_factory()
    job = start(JobAction.INVITE, [user])
    create = apple.create_users

    def limited_once(users_):
        apple.create_users = create
        raise RateLimitedError("Too many requests", error_number=9646, http_status=429, retry_after=3600)

    apple.create_users = limited_once
    loop = JobLoop(apple)
    job = loop.run(job)
    assert (job.status, job.succeeded) == (JobStatus.DONE, 1)
    [retry] = [m for m in loop.published if m.options.get("retries")]
    assert (retry.task, retry.args, retry.options["countdown"]) == (
        "vpp.job_chunk",
        (job.pk, "invite", 0),
        tasks.MAX_COUNTDOWN,
    )


def test_it_retries_failed_items_only(apple, token_setting, user_factory):
    ok, bad = user_factory(), user_factory()
    job = start(JobAction.INVITE, [ok, bad])
    apple.refuse[str(VppUser.objects.get(user=bad).client_user_id)] = (9603, "Internal error")
    job = run_job(job, apple)
    retry = job_retry_failed(job=job, actor=None)
    assert list(JobItem.objects.filter(job=retry).values_list("user_id", flat=True)) == [bad.pk]
    retry = run_job(retry, apple)
    assert retry.succeeded == 1


def test_it_waits_before_resending_a_create_apple_may_still_be_working_on(apple, token_setting, user_factory, settings):
    from django.utils import timezone

    user = user_factory()
    job = start(JobAction.INVITE, [user])
    # The create went out, the worker died before the answer was stored, Apple has not processed it yet.
    JobItem.objects.filter(job=job).update(request_sent_at=timezone.now())
    settings.VPP_CREATE_RECHECK_SECONDS = 600
    job = run_job(job, apple, max_rounds=4)
    assert job.status == JobStatus.RUNNING
    assert apple.count("create_users") == 0 and apple.count("get_user") >= 1
    settings.VPP_CREATE_RECHECK_SECONDS = 1
    JobItem.objects.filter(job=job).update(request_sent_at=timezone.now() - timedelta(seconds=5))
    job = run_job(job, apple)
    assert (job.status, job.succeeded) == (JobStatus.DONE, 1)
    assert apple.count("create_users") == 1
