"""Job-level leases: one holder at a time, released only by their holder, expiring when left behind."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from vpp.jobs import leases as job_lease
from vpp.jobs.leases import CREATE_TURN, READBACK, lease_claim, lease_held, lease_release
from vpp.models import Job, JobAction

pytestmark = pytest.mark.django_db


@pytest.fixture
def job():
    return Job.objects.create(action=JobAction.INVITE)


def test_one_holder_at_a_time_per_lease(job):
    mine = lease_claim(job, CREATE_TURN)
    assert mine and lease_claim(job, CREATE_TURN) is None
    assert lease_claim(job, READBACK)  # another lease of the same job is independent
    lease_release(job, CREATE_TURN, mine)
    assert lease_claim(job, CREATE_TURN)


def test_a_stale_holder_cannot_release_a_newer_lease(job):
    old = lease_claim(job, CREATE_TURN)
    Job.objects.filter(pk=job.pk).update(create_turn_until=timezone.now() - timedelta(seconds=1))  # it expired
    new = lease_claim(job, CREATE_TURN)
    assert new
    lease_release(job, CREATE_TURN, old)
    assert Job.objects.get(pk=job.pk).create_turn_until == new


def test_a_waiter_stops_when_its_work_is_done_meanwhile(job, monkeypatch):
    lease_claim(job, READBACK)
    monkeypatch.setattr(job_lease.time, "sleep", lambda _s: None)
    with lease_held(job, READBACK, token="t", done=lambda: True) as needed:
        assert needed is False


def test_a_waiter_goes_ahead_without_the_lease_after_two_lease_lengths(job, monkeypatch, settings):
    settings.VPP_JOB_STALE_SECONDS = 0.01  # lease length min(15 s, stale seconds)
    Job.objects.filter(pk=job.pk).update(readback_lease_until=timezone.now() + timedelta(hours=1))  # never expires
    with lease_held(job, READBACK, token="t") as needed:
        assert needed is True
    assert Job.objects.get(pk=job.pk).readback_lease_until > timezone.now()  # not ours: left alone
