"""Item and step primitives shared by the engine and every phase.

A job's work is a set of ``JobItem`` rows, one per device user. A phase claims the items of
its chunk (``status`` in flight, a claim token, ``claimed_at`` as the item's heartbeat) and
moves each to its next step or to a final status with the helpers here. Every write is a
conditional UPDATE on items still in flight, so a redelivered or stale task cannot overwrite
what another task finished. How claims, stale items and attempts work: docs/vpp-jobs.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from vpp.models import ItemStatus, Job, JobItem


class JobDeferred(Exception):
    """The chunk must run again later (Apple said wait, or events are still pending).

    ``countdown``: seconds until it runs again. ``counts_as_attempt``: waiting for Apple's
    events is progress and costs no attempt, but a retry after a failure (e.g. the mail
    server was down) does, so attempts stay capped.
    """

    def __init__(self, countdown: float, *, counts_as_attempt: bool = False):
        super().__init__(f"deferred for {countdown:.1f} s")
        self.countdown = countdown
        self.counts_as_attempt = counts_as_attempt


@dataclass(frozen=True)
class JobLimits:
    """``chunk_size`` items per chunk task; ``max_attempts`` per item (or job-level phase);
    ``stale_seconds`` of silence after which a job or item is taken over by another worker."""

    chunk_size: int
    max_attempts: int
    stale_seconds: int


def job_limits() -> JobLimits:
    """The limits from settings (``VPP_JOB_CHUNK_SIZE``, ``VPP_JOB_MAX_ATTEMPTS``, ``VPP_JOB_STALE_SECONDS``)."""
    return JobLimits(
        chunk_size=getattr(settings, "VPP_JOB_CHUNK_SIZE", 1000),
        max_attempts=getattr(settings, "VPP_JOB_MAX_ATTEMPTS", 8),
        stale_seconds=getattr(settings, "VPP_JOB_STALE_SECONDS", 300),
    )


def job_heartbeat(*, job: Job, token: str | None = None) -> None:
    """Say the job (and the items claimed with ``token``) are alive, so the sweeper leaves them alone."""
    now = timezone.now()
    Job.objects.filter(pk=job.pk).update(heartbeat_at=now)
    if token:
        JobItem.objects.filter(claim_token=token, status=ItemStatus.IN_FLIGHT).update(claimed_at=now)


def job_release(*, token: str, refund_attempt: bool = False) -> None:
    """Give claimed, unfinished items back to the queue (transient error, waiting for Apple)."""
    update = {"status": ItemStatus.PENDING, "claimed_at": None}
    if refund_attempt:
        update["attempts"] = F("attempts") - 1
    JobItem.objects.filter(claim_token=token, status=ItemStatus.IN_FLIGHT, attempts__gt=0).update(**update)


def backoff_seconds(items: list[JobItem]) -> float:
    """Exponential backoff by the items' attempts so far: 2, 4, 8 … 256 s (then attempts run out)."""
    attempts = max((item.attempts for item in items), default=1)
    return float(min(300, 2 ** min(attempts, 8)))


def _in_flight(items: list[JobItem]):
    return JobItem.objects.filter(pk__in=[item.pk for item in items], status=ItemStatus.IN_FLIGHT)


def item_move(items: list[JobItem], step: str) -> None:
    """Hand in-flight items on to ``step`` (a later phase claims them there)."""
    _in_flight(items).update(step=step, status=ItemStatus.PENDING, claimed_at=None)


def item_set_step(items: list[JobItem], step: str) -> None:
    """Record progress inside a claimed chunk (the items stay in flight)."""
    _in_flight(items).update(step=step)
    for item in items:
        item.step = step


def item_fail(items: list[JobItem], reason: str, error_number: int | None = None) -> None:
    """Fail in-flight items with a reason for the admin (and Apple's error number, if any)."""
    _in_flight(items).update(status=ItemStatus.FAILED, reason=reason[:500], error_number=error_number)
    for item in items:
        item.status = ItemStatus.FAILED


def item_succeed(items: list[JobItem], reason: str = "") -> None:
    """Finish in-flight items as succeeded, with what was done."""
    _in_flight(items).update(status=ItemStatus.SUCCEEDED, reason=reason[:500], error_number=None)
