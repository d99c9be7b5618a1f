"""Issue 13: a reminders round through a REAL Celery worker: the beat tick task (delivered
twice) starts one round on the job engine, and each waiting user gets one reminder."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from kmconsole.celery import app
from tests.support.users import make_user
from tests.support.worker import read_outbox, wait_until
from tests.vpp import test_unit_worker
from users.models import User
from users.selectors import UserSelection
from vpp.jobs.engine import job_create
from vpp.jobs.plan import vpp_plan_build
from vpp.models import Job, JobAction, JobItem, JobStatus, VppServerSetting, VppUser, VppUserStatus

# The worker of the unit tests (a real Celery worker, the token uploaded to the sandbox).
worker = test_unit_worker.worker
finished = test_unit_worker.finished
pytestmark = [pytest.mark.worker, pytest.mark.sandbox, pytest.mark.django_db(transaction=True)]


def test_a_reminder_round_through_the_worker_reaches_each_user_once(vpp_sandbox, worker):
    users = [make_user(f"Waiting {n}", email=f"waiting{n}@example.com") for n in range(3)]
    accepted = make_user("Accepted", email="accepted@example.com")
    everyone = [*users, accepted]
    plan = vpp_plan_build(
        action=JobAction.INVITE, users=User.objects.filter(pk__in=[u.pk for u in everyone]), channel="email"
    )
    invite = job_create(plan=plan, actor=None, selection=UserSelection(ids=tuple(u.pk for u in everyone)))
    assert finished(worker, invite, "the invite").succeeded == 4
    wait_until(lambda: len(read_outbox(worker.outbox)) == 4, timeout=30, message="4 invitations")
    VppUser.objects.filter(user=accepted).update(status=VppUserStatus.ASSOCIATED)  # accepted meanwhile
    # Four days pass (the worker is another process: the invitation dates move instead of the clock).
    VppUser.objects.update(invited_at=timezone.now() - dt.timedelta(days=4))
    VppServerSetting.objects.filter(pk=1).update(reminders_enabled=True, reminder_after_days=3, reminder_max=2)

    app.send_task("vpp.sync_tick")
    app.send_task("vpp.sync_tick")  # the beat's message delivered twice
    wait_until(lambda: Job.objects.filter(action=JobAction.REMINDERS).exists(), timeout=60, message="a round")
    round_job = Job.objects.get(action=JobAction.REMINDERS)
    round_job = finished(worker, round_job, "the reminders round")

    assert (round_job.status, round_job.succeeded, round_job.failed) == (JobStatus.DONE, 3, 0)
    assert set(JobItem.objects.filter(job=round_job).values_list("user_id", flat=True)) == {u.pk for u in users}
    wait_until(lambda: len(read_outbox(worker.outbox)) >= 7, timeout=30, message="3 reminders")
    messages = read_outbox(worker.outbox)
    # Each waiting user: the invitation and one reminder; the associated user: the invitation only.
    received = {f"waiting{n}": sum(f"waiting{n}@example.com" in text for text in messages) for n in range(3)}
    assert received == {"waiting0": 2, "waiting1": 2, "waiting2": 2}
    assert sum("accepted@example.com" in text for text in messages) == 1
    assert Job.objects.filter(action=JobAction.REMINDERS).count() == 1
    assert set(VppUser.objects.filter(user__in=users).values_list("reminders_sent", flat=True)) == {1}
