"""Two requests starting a job for the same user at the same moment: the loser gets a sentence
and a 409, never a 500, and nothing of its job is written (issue 10 item 2, "never a 500")."""

from __future__ import annotations

import pytest

from tests.support.users import make_user
from users.models import User
from users.selectors import UserSelection
from vpp.jobs import engine
from vpp.jobs.engine import JobConflict, job_create
from vpp.jobs.plan import vpp_plan_build
from vpp.models import AuditEvent, Job, JobAction, VppUser

pytestmark = pytest.mark.django_db


def the_other_request_wins(monkeypatch, user):
    """Between our plan and our write, another request makes the user's VPP user (the race's loser)."""
    original = engine._ensure_vpp_users

    def racing(plan):
        VppUser.objects.create(user=user)
        return original(plan)

    monkeypatch.setattr(engine, "_ensure_vpp_users", racing)


def test_job_create_that_loses_the_race_raises_a_conflict_and_writes_nothing(monkeypatch):
    user = make_user("Rita")
    plan = vpp_plan_build(action=JobAction.INVITE, users=User.objects.filter(pk=user.pk), channel="email")
    the_other_request_wins(monkeypatch, user)
    with pytest.raises(JobConflict, match="Nothing was started"):
        job_create(plan=plan, actor=None, selection=UserSelection(ids=(user.pk,)))
    assert (Job.objects.count(), AuditEvent.objects.count()) == (0, 0)
