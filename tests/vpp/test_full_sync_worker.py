"""The schedule end to end: two beat ticks through a REAL Celery worker start one full sync,
which runs to the end against the sandbox."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from tests.vpp.worker import Worker, purge_queue, wait_until
from users.models import User
from vpp import tasks
from vpp.apple.client import VppClient
from vpp.apple.types import RequestUser
from vpp.models import Job, JobAction, JobStatus, ScheduleMode, SyncSchedule, VppServerSetting, VppUser, VppUserStatus
from vpp.services import setting as setting_service
from vpp.services.schedule import ScheduleInput, schedule_update

pytestmark = [pytest.mark.worker, pytest.mark.sandbox, pytest.mark.django_db(transaction=True)]


def test_two_ticks_through_the_worker_start_one_sync_that_finishes(vpp_sandbox, tmp_path):
    setting = VppServerSetting.load()
    setting.api_base_url = vpp_sandbox.base_url
    setting.save()
    setting_service.token_upload(data=vpp_sandbox.token, actor=None)
    user = User.objects.create(display_name="Ada", login_id="ada", email="ada@example.com")
    ada = VppUser.objects.create(user=user, status=VppUserStatus.INVITED, apple_email=user.email)
    apple = VppClient(vpp_sandbox.token, base_url=vpp_sandbox.base_url)
    apple.wait_for_event(
        apple.create_users([RequestUser(str(ada.client_user_id), email=user.email)])[0], poll_interval=0.05
    )
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
