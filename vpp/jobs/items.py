"""Item and step primitives shared by the engine and every phase.

A job's work is a set of ``JobItem`` rows, one per device user. A phase claims the items of
its chunk (``status`` in flight, a claim token, ``claimed_at`` as the item's heartbeat) and
moves each to its next step or to a final status with the helpers here. Every write is a
conditional UPDATE on items still in flight, so a redelivered or stale task cannot overwrite
what another task finished. How claims, stale items and attempts work: docs/vpp-jobs.md.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import close_old_connections, connection
from django.db.models import F
from django.utils import timezone

from vpp.models import ItemStatus, Job, JobItem

logger = logging.getLogger(__name__)


class JobDeferred(Exception):
    """The chunk must run again later (Apple said wait, or events are still pending).

    ``countdown``: seconds until it runs again. ``counts_as_attempt``: waiting for Apple's
    events is progress and costs no attempt, but a retry after a failure (e.g. the mail
    server was down) does, so attempts stay capped. ``reason``: a sentence for the job panel
    (recorded with ``job_wait_set`` until the countdown ends).
    """

    def __init__(self, countdown: float, *, counts_as_attempt: bool = False, reason: str = ""):
        super().__init__(f"deferred for {countdown:.1f} s")
        self.countdown = countdown
        self.counts_as_attempt = counts_as_attempt
        self.reason = reason  # what the job waits for, for the panel (empty: nothing worth saying)


@dataclass(frozen=True)
class JobLimits:
    """``chunk_size`` items per chunk task; ``max_attempts`` per item (or job-level phase);
    ``stale_seconds`` of silence after which a job or item is taken over by another worker;
    ``heartbeat_seconds`` between a running task's heartbeats (a sixth of ``stale_seconds``);
    ``sweep_seconds`` between two sweeps by each worker (docs/operations.md#recovery)."""

    chunk_size: int
    max_attempts: int
    stale_seconds: float
    sweep_seconds: float = 10.0

    @property
    def heartbeat_seconds(self) -> float:
        return max(0.05, self.stale_seconds / 6)


def job_limits() -> JobLimits:
    """The limits from settings (``VPP_JOB_CHUNK_SIZE``, ``VPP_JOB_MAX_ATTEMPTS``, ``VPP_JOB_STALE_SECONDS``)."""
    return JobLimits(
        chunk_size=getattr(settings, "VPP_JOB_CHUNK_SIZE", 1000),
        max_attempts=getattr(settings, "VPP_JOB_MAX_ATTEMPTS", 8),
        stale_seconds=getattr(settings, "VPP_JOB_STALE_SECONDS", 30),
        sweep_seconds=getattr(settings, "VPP_JOB_SWEEP_SECONDS", 10),
    )


# --------------------------------------------------------------------------- heartbeat thread

_heartbeat_threads = False


def heartbeat_threads_enable() -> None:
    """Called in each worker process (``worker_process_init``): running tasks heartbeat from a thread.

    Off elsewhere (tests driving tasks in-process hold their rows in one transaction a second
    connection must not wait for).
    """
    global _heartbeat_threads
    _heartbeat_threads = True


@contextmanager
def heartbeat_while(*, job_id: int, token: str = "") -> Iterator[None]:
    """Keep ``Job.heartbeat_at`` (and the ``claimed_at`` of the items claimed with ``token``) fresh
    every ``heartbeat_seconds`` while the block runs, whatever it waits for (a slow Apple, the
    client's retries, the rate limiter). A task that dies stops beating, so the sweeper sees it
    within ``stale_seconds``. Runs only in worker processes (``heartbeat_threads_enable``)."""
    if not _heartbeat_threads:
        yield
        return
    stop = threading.Event()
    interval = job_limits().heartbeat_seconds

    def beat() -> None:
        try:
            while not stop.wait(interval):
                try:
                    now = timezone.now()
                    Job.objects.filter(pk=job_id).update(heartbeat_at=now)
                    if token:
                        JobItem.objects.filter(claim_token=token, status=ItemStatus.IN_FLIGHT).update(claimed_at=now)
                except Exception:
                    logger.warning("job %s: heartbeat failed", job_id, exc_info=True)
                    close_old_connections()
        finally:
            connection.close()

    thread = threading.Thread(target=beat, name=f"job-{job_id}-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=interval + 30)


# --------------------------------------------------------------------------- what the job waits for


def job_wait_set(*, job: Job | int, reason: str, until: datetime | None = None, seconds: float | None = None) -> None:
    """Record what the job waits for (a sentence for the panel) and until when (UTC).

    ``waiting_since`` keeps its first value while the same reason goes on, so the panel can say
    "since 14:02". ``seconds`` is an alternative to ``until`` (from now)."""
    job_id = job if isinstance(job, int) else job.pk
    now = timezone.now()
    if until is None and seconds is not None:
        until = now + timedelta(seconds=seconds)
    Job.objects.filter(pk=job_id).exclude(wait_reason=reason[:300]).update(waiting_since=now)
    Job.objects.filter(pk=job_id).update(wait_reason=reason[:300], wait_until=until)


def job_wait_clear(*, job: Job | int, reason: str | None = None) -> None:
    """The job works again: forget the wait (only ``reason``'s, when given)."""
    job_id = job if isinstance(job, int) else job.pk
    jobs = Job.objects.filter(pk=job_id).exclude(wait_reason="")
    if reason is not None:
        jobs = jobs.filter(wait_reason=reason[:300])
    jobs.update(wait_reason="", waiting_since=None, wait_until=None)


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
    _in_flight(items).update(step=step, status=ItemStatus.PENDING, claimed_at=None, updated_at=timezone.now())


def item_set_step(items: list[JobItem], step: str) -> None:
    """Record progress inside a claimed chunk (the items stay in flight)."""
    _in_flight(items).update(step=step, updated_at=timezone.now())
    for item in items:
        item.step = step


def item_fail(items: list[JobItem], reason: str, error_number: int | None = None) -> None:
    """Fail in-flight items with a reason for the admin (and Apple's error number, if any)."""
    _in_flight(items).update(
        status=ItemStatus.FAILED, reason=reason[:500], error_number=error_number, updated_at=timezone.now()
    )
    for item in items:
        item.status = ItemStatus.FAILED


def item_succeed(items: list[JobItem], reason: str = "") -> None:
    """Finish in-flight items as succeeded, with what was done."""
    _in_flight(items).update(
        status=ItemStatus.SUCCEEDED, reason=reason[:500], error_number=None, updated_at=timezone.now()
    )


@dataclass(frozen=True)
class JobWait:
    """What an unfinished job is waiting for, for the job panel: ``reason`` (a sentence), since and
    until when (UTC, either may be None), ``next`` (what happens next, a sentence) and ``severe``
    (True when nothing will happen without an admin or a broker coming back)."""

    reason: str
    since: datetime | None
    until: datetime | None
    next: str
    severe: bool = False


def job_wait_state(job: Job, *, now: datetime | None = None) -> JobWait | None:
    """The one reading of a job's wait state (the panel says it; docs/operations.md#job-panel).

    In order: the broker refused its message; a wait the job recorded (Apple's Retry-After, the
    client's retries, Apple's 10-minute rule, Redis down) that has not run out; a running job no
    worker reported on for ``stale_seconds`` (its worker stopped: when a worker takes it over);
    a queued job no worker took. None while the job simply works, or once it finished."""
    if job.finished:
        return None
    now = now or timezone.now()
    limits = job_limits()
    stale = timedelta(seconds=limits.stale_seconds)
    if job.enqueue_error:
        return JobWait(
            job.enqueue_error,
            job.waiting_since,
            None,
            "The job is saved; it continues by itself once the broker is back.",
            severe=True,
        )
    if job.wait_reason and (job.wait_until is None or job.wait_until > now):
        return JobWait(job.wait_reason, job.waiting_since, job.wait_until, "The job continues by itself.")
    if job.retry_after_until and job.retry_after_until > now:
        return JobWait("Apple asked us to wait.", None, job.retry_after_until, "The job continues by itself.")
    if job.delivery_retry_until and job.delivery_retry_until > now:
        return None  # the panel's delivery callout says it
    last = max(filter(None, [job.heartbeat_at, job.wait_until, job.retry_after_until]), default=None)
    if job.status == "running" and last is not None and last < now - stale:
        pickup = last + stale + timedelta(seconds=limits.sweep_seconds)
        if pickup > now:
            next_step = f"A running worker takes it over by {pickup:%H:%M:%S} UTC."
        else:
            next_step = "No worker has taken it over yet: check that a worker is running (docs/operations.md)."
        return JobWait(
            f"The worker running this job stopped reporting at {last:%H:%M:%S} UTC.",
            last,
            None,
            next_step,
            severe=pickup <= now,
        )
    if job.status == "queued" and job.created_at and job.created_at < now - stale:
        return JobWait(
            "No worker has taken this job yet.",
            job.created_at,
            None,
            "Check that a worker is running (docs/operations.md).",
            severe=True,
        )
    return None
