"""Celery tasks: ids in, one service call each; the retry policy lives here (docs/vpp-jobs.md).

Every task is named ``vpp.<name>`` and is safe to run twice (claims are conditional UPDATEs).
"""

from __future__ import annotations

import logging

from celery import shared_task
from celery.signals import worker_ready

from vpp.jobs import engine
from vpp.services import alerts, schedule, setting

logger = logging.getLogger(__name__)

# Waits longer than this go through the sweeper, never into a broker ETA (visibility timeout).
MAX_COUNTDOWN = 900


@shared_task(name=engine.DISPATCH_TASK, acks_late=True)
def job_dispatch(job_id: int) -> None:
    """Start or resume job ``job_id``: one ``vpp.job_chunk`` per chunk of its current phase."""
    _dispatch(job_id)


def _dispatch(job_id: int) -> None:
    for phase, chunk in engine.job_dispatch(job_id=job_id):
        job_chunk.apply_async(args=[job_id, phase, chunk], **engine.job_task_options(phase))


@shared_task(name="vpp.job_chunk", bind=True, acks_late=True, max_retries=None)
def job_chunk(self, job_id: int, phase: str, chunk: int) -> None:
    """Run one chunk of one phase; Apple's Retry-After and pending events re-queue it with a countdown."""
    try:
        redispatch = engine.job_process_chunk(job_id=job_id, phase=phase, chunk=chunk)
    except engine.JobDeferred as deferred:
        # Retry-After, backoff, or events still pending at Apple. Attempts are capped per item.
        raise self.retry(
            countdown=min(max(deferred.countdown, 0.1), MAX_COUNTDOWN), **engine.job_task_options(phase)
        ) from None
    if redispatch:
        _dispatch(job_id)  # the next phase starts now, without another trip through the broker


@shared_task(name="vpp.jobs_sweep", acks_late=True)
def jobs_sweep() -> list[int]:
    """Every minute: re-dispatch jobs whose worker died or whose enqueue failed."""
    return engine.jobs_sweep()


@worker_ready.connect
def _recover_after_restart(**_kwargs) -> None:
    """A worker that starts picks up jobs a killed worker left behind (once they look stale)."""
    stale = engine.job_limits().stale_seconds
    try:
        jobs_sweep.apply_async()
        jobs_sweep.apply_async(countdown=stale + 1)
    except Exception:
        logger.warning("could not schedule the job sweep at worker start", exc_info=True)


@shared_task(name="vpp.sync_tick", ignore_result=True, acks_late=False)
def sync_tick() -> bool:
    """Every minute (the one static Beat entry): start the scheduled full sync if it is due, then
    send the alerts whose state changed (token expiring, sync failing: vpp/services/alerts.py)."""
    started = schedule.schedule_tick()
    alerts.alerts_check()
    return started


@shared_task(name="vpp.token_health_check", ignore_result=True)
def token_health_check() -> str:
    """Daily: ask Apple about the stored token so the banner (and the alerts) change without anyone looking."""
    health = setting.token_check_health().health
    alerts.alerts_check()
    return health
