"""Short job-level leases: one chunk at a time does a step whose parallel runs would only compete.

A lease is a timestamp column on the Job row, claimed with a conditional UPDATE (free or
expired → ours until then) and released only by its holder. Leases order work for speed; they
guard nothing that correctness depends on: a lease left by a dead worker expires, and a chunk
that waited too long goes ahead without one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone

from vpp.jobs.items import job_heartbeat, job_limits
from vpp.models import Job

LEASE_SECONDS = 15  # a step that outlives it lets a second chunk in (slower, still correct)
# Each look is an UPDATE (and, for the read-back, a SELECT): a waiter looks ~7 times a second.
# A create turn changes hands after ~0.3 s of requests, so a later look costs little.
POLL_SECONDS = 0.15
HEARTBEAT_SECONDS = 1.0

# The Job columns that hold a lease.
CREATE_TURN = "create_turn_until"
READBACK = "readback_lease_until"


def lease_seconds() -> float:
    # Never longer than the item claims: a dead worker's lease must not hold up the chunks that take over.
    return min(LEASE_SECONDS, job_limits().stale_seconds)


def lease_claim(job: Job, field: str) -> datetime | None:
    now = timezone.now()
    until = now + timedelta(seconds=lease_seconds())
    free = Q(**{f"{field}__isnull": True}) | Q(**{f"{field}__lt": now})
    return until if Job.objects.filter(free, pk=job.pk).update(**{field: until}) else None


def lease_release(job: Job, field: str, lease: datetime | None) -> None:
    if lease is not None:
        Job.objects.filter(pk=job.pk, **{field: lease}).update(**{field: None})


@contextmanager
def lease_held(job: Job, field: str, *, token: str, done: Callable[[], bool] = lambda: False) -> Iterator[bool]:
    """Wait for the lease and hold it inside the block; yields False if ``done()`` came true while waiting.

    After two lease lengths of waiting the block runs without the lease.
    """
    lease, finished = _wait(job, field, token=token, done=done)
    try:
        yield not finished
    finally:
        lease_release(job, field, lease)


def _wait(job: Job, field: str, *, token: str, done: Callable[[], bool]) -> tuple[datetime | None, bool]:
    deadline = time.monotonic() + 2 * lease_seconds()
    beat = time.monotonic()
    while time.monotonic() < deadline:
        lease = lease_claim(job, field)
        if lease:
            return lease, False
        time.sleep(POLL_SECONDS)
        if done():
            return None, True
        if time.monotonic() - beat > HEARTBEAT_SECONDS:
            job_heartbeat(job=job, token=token)  # waiting is progress: keep the items' claims fresh
            beat = time.monotonic()
    return None, False
