"""The full sync through a REAL Celery worker against the sandbox: two beat ticks start one sync
that runs to the end, and a worker killed mid-sync is replaced through the sweeper."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import transaction
from django.utils import timezone

from tests.support.users import make_user
from tests.support.worker import Worker, purge_queue, wait_until
from users.models import User
from vpp import tasks
from vpp.apple.client import VppClient
from vpp.apple.types import RequestUser
from vpp.models import (
    Job,
    JobAction,
    JobStatus,
    ScheduleMode,
    SyncRun,
    SyncSchedule,
    VppServerSetting,
    VppUser,
    VppUserStatus,
)
from vpp.services import setting as setting_service
from vpp.services.schedule import ScheduleInput, schedule_update
from vpp.services.sync import sync_start

pytestmark = [pytest.mark.worker, pytest.mark.sandbox, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def apple(vpp_sandbox):
    """The sandbox's token uploaded (and its location claimed) as an admin would; a client for it."""
    setting = VppServerSetting.load()
    setting.api_base_url = vpp_sandbox.base_url
    setting.save()
    setting_service.token_upload(data=vpp_sandbox.token, actor=None)
    return VppClient(vpp_sandbox.token, base_url=vpp_sandbox.base_url)


def test_two_ticks_through_the_worker_start_one_sync_that_finishes(vpp_sandbox, apple, tmp_path):
    ada = make_user(
        "Ada", login_id="ada", email="ada@example.com", devices=(), vpp_status=VppUserStatus.INVITED, at_apple=apple
    ).vpp_user
    vpp_sandbox.accept_invitation(vpp_sandbox.users()[0]["inviteCode"])

    schedule_update(
        data=ScheduleInput(
            enabled=True,
            mode=ScheduleMode.INTERVAL,
            interval_hours=1,
            time_of_day=dt.time(3, 0),
            timezone="Europe/Berlin",
        ),
        actor=None,
    )
    SyncSchedule.objects.filter(pk=1).update(next_run_at=timezone.now() - dt.timedelta(seconds=5))  # due now
    purge_queue()
    tasks.sync_tick.delay()
    tasks.sync_tick.delay()  # a second beat, or the same tick redelivered
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    worker = Worker(outbox=outbox).start()
    try:

        def finished():
            jobs = list(Job.objects.filter(action=JobAction.SYNC_ALL))
            return jobs if jobs and all(job.finished for job in jobs) else None

        try:
            jobs = wait_until(finished, timeout=60, message="the scheduled sync to finish")
        except AssertionError:
            raise AssertionError(worker.log_tail()) from None
        wait_until(lambda: SyncSchedule.load().last_tick_at is not None, timeout=10, message="ticks")
    finally:
        worker.stop()
    assert [job.status for job in jobs] == [JobStatus.DONE]
    assert jobs[0].selection["trigger"] == "schedule"
    ada.refresh_from_db()
    assert ada.status == VppUserStatus.ASSOCIATED
    schedule = SyncSchedule.load()
    assert schedule.next_run_at > timezone.now() + dt.timedelta(minutes=55)
    assert schedule.last_result == "succeeded" and schedule.running_job_id is None


@pytest.mark.skip(
    reason="Known open problem (closing note of 2026-11-30): the read phase now ends before the test can "
    "observe it mid-listing, so the kill lands after it; the probe needs rework before this runs again."
)
def test_a_worker_killed_during_a_full_sync_is_replaced_by_the_sweeper(vpp_sandbox, apple, tmp_path):
    """As for an invite job: the sweeper finds the silent sync and a new worker finishes it."""
    users = [User(display_name=f"User {n}", login_id=f"user{n}", email=f"user{n}@example.com") for n in range(24)]
    User.objects.bulk_create(users)
    vpp_users = [VppUser(user=u, status=VppUserStatus.INVITED, apple_email=u.email) for u in User.objects.all()]
    VppUser.objects.bulk_create(vpp_users)
    requests = [RequestUser(str(v.client_user_id), email=v.apple_email) for v in VppUser.objects.all()]
    for event in apple.create_users(requests):
        apple.wait_for_event(event, poll_interval=0.05)
    # One user per page, each page slow (pages are fetched in parallel): the read phase takes several seconds.
    vpp_sandbox.control(page_size=1, latency=1.0)
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    env = {"VPP_JOB_STALE_SECONDS": "3"}
    purge_queue()
    first = Worker(outbox=outbox, env=env).start()
    second = None
    try:
        with transaction.atomic():
            started = sync_start(actor=None)
        job = started.job

        def reading():
            run = SyncRun.objects.get(job=job)
            return Job.objects.get(pk=job.pk).phase == "read_all" and run.counts.get("apple_users", 0) >= 3

        try:
            wait_until(reading, timeout=60, message="the sync to be reading Apple's users")
        except AssertionError:
            raise AssertionError(first.log_tail()) from None
        first.kill()
        job.refresh_from_db()
        assert not job.finished and job.phase == "read_all"
        vpp_sandbox.control(latency=0.0)
        second = Worker(outbox=outbox, env=env).start()

        def done():
            job.refresh_from_db()
            return job.finished

        try:
            wait_until(done, timeout=90, message="the sweeper and a new worker to finish the sync")
        except AssertionError:
            raise AssertionError(second.log_tail()) from None
    finally:
        first.kill()
        if second:
            second.stop()
    assert (job.status, job.phase, job.phase_token) == (JobStatus.DONE, "done", "")
    run = SyncRun.objects.get(job=job)
    assert run.counts["apple_users"] == 24  # the restarted read counted each user once
    schedule = SyncSchedule.load()
    assert schedule.last_result == "succeeded" and schedule.running_job_id is None
    assert VppServerSetting.load().users_version_id == run.version_id != ""
