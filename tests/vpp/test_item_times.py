"""A job item's ``updated_at`` is when its outcome was written (the person page's timeline orders
by it: "Send VPP invitation: succeeded" comes after "Job started", not before)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from tests.support.users import make_user
from users.models import User
from users.selectors import UserSelection
from vpp.jobs.engine import job_create
from vpp.jobs.items import item_fail, item_set_step, item_succeed
from vpp.jobs.plan import vpp_plan_build
from vpp.models import ItemStatus, JobAction, JobItem

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "finish", [item_succeed, lambda items: item_fail(items, "no"), lambda i: item_set_step(i, "x")]
)
def test_writing_an_items_outcome_moves_its_updated_at(finish):
    user = make_user("Tia")
    plan = vpp_plan_build(action=JobAction.INVITE, users=User.objects.filter(pk=user.pk), channel="email")
    job = job_create(plan=plan, actor=None, selection=UserSelection(ids=(user.pk,)))
    JobItem.objects.filter(job=job).update(status=ItemStatus.IN_FLIGHT)
    items = list(JobItem.objects.filter(job=job))
    created = items[0].updated_at
    with time_machine.travel(timezone.now() + timedelta(minutes=5)):
        finish(items)
    assert JobItem.objects.get(pk=items[0].pk).updated_at >= created + timedelta(minutes=5)


def test_a_jobs_title_and_starter_say_dry_run_and_who_started_it():
    from vpp.models import Job

    dry = Job(action=JobAction.DIRECTORY, selection={"dry_run": True, "trigger": "demo"})
    assert (dry.title, dry.starter) == ("Sync people and devices from Apple Business (dry run)", "the demo set-up")
    scheduled = Job(action=JobAction.SYNC_ALL, selection={"scope": "all", "trigger": "schedule"})
    assert (scheduled.title, scheduled.starter) == ("Full sync with Apple", "the schedule")
