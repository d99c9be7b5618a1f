"""Start the full sync with Apple ("Sync now" on the VPP Server Setting page, and the schedule).

Only one full sync runs per content token: ``SyncSchedule.running_job_id`` is claimed with a
conditional UPDATE in the transaction that creates the Job, so a second request (a double
click, a second beat) gets the running job instead of a new one. The sync itself runs on the
one job engine (vpp/jobs/engine.py, phases in vpp/jobs/phases/full_sync.py): a worker that
dies is replaced by the sweeper, a broker that is down is retried, as for every job.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from vpp.audit import audit_record
from vpp.jobs.engine import job_enqueue
from vpp.models import Job, JobAction, JobStatus, SyncResult, SyncRun, SyncSchedule, VppServerSetting
from vpp.selectors import token_problem
from vpp.services import Refused


class SyncBlocked(Refused):
    """The sync cannot start (no token, or a token Apple refuses); ``reason`` is for the admin."""


@dataclass(frozen=True)
class SyncStart:
    """``job``: the sync job; ``started``: False when a sync was already running (``job`` is that one)."""

    job: Job
    started: bool


def running_sync_job() -> Job | None:
    """The full sync that holds the one-per-token claim, or None."""
    running_id = SyncSchedule.objects.filter(pk=1).values_list("running_job_id", flat=True).first()
    return Job.objects.filter(pk=running_id).first() if running_id else None


def sync_start(*, actor=None, trigger: str = "manual", now: dt.datetime | None = None) -> SyncStart:
    """Create the full-sync Job and enqueue it after commit, or return the one already running.

    ``trigger`` is "manual" or "schedule". Raises ``SyncBlocked`` when the token blocks calls
    to Apple. A running sync whose worker died is not replaced: the sweeper resumes it.
    """
    now = now or timezone.now()
    problem = token_problem(VppServerSetting.load())
    if problem:
        raise SyncBlocked(problem)
    SyncSchedule.load()
    with transaction.atomic():
        running = running_sync_job()
        if running is not None and not running.finished:
            return SyncStart(running, started=False)
        job = Job.objects.create(
            action=JobAction.SYNC_ALL,
            started_by=actor if getattr(actor, "pk", None) else None,
            status=JobStatus.QUEUED,
            selection={"scope": "all", "trigger": trigger},
        )
        won = SyncSchedule.objects.filter(pk=1, running_job_id=running.pk if running else None).update(
            running_job_id=job.pk,
            last_job_id=job.pk,
            last_run_at=now,
            last_result=SyncResult.RUNNING,
            last_counts={},
            last_detail="",
            last_finished_at=None,
        )
        if won:
            SyncRun.objects.create(job=job, trigger=trigger)
            audit_record(actor=actor, action="vpp.sync_started", details={"trigger": trigger}, job=job)
            transaction.on_commit(lambda: job_enqueue(job_id=job.pk))
        else:  # somebody else claimed it between our read and our UPDATE: drop our job
            transaction.set_rollback(True)
    if won:
        return SyncStart(job, started=True)
    last_id = SyncSchedule.objects.values_list("last_job_id", flat=True).get(pk=1)
    return SyncStart(running_sync_job() or Job.objects.get(pk=last_id), started=False)
