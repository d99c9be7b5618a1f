"""Celery tasks for VPP jobs: ids in, one service call, retry policy here (DESIGN.md)."""

from __future__ import annotations

import logging

from celery import shared_task
from celery.signals import worker_ready

from vpp.jobs import engine as jobs

logger = logging.getLogger(__name__)

# Waits longer than this go through the sweeper, never into a broker ETA (visibility timeout).
MAX_COUNTDOWN = 900


@shared_task(name="vpp.job_dispatch", acks_late=True)
def job_dispatch(job_id: int) -> None:
    _dispatch(job_id)


def _dispatch(job_id: int) -> None:
    for phase, chunk in jobs.job_dispatch(job_id=job_id):
        job_chunk.apply_async(args=[job_id, phase, chunk])


@shared_task(name="vpp.job_chunk", bind=True, acks_late=True, max_retries=None)
def job_chunk(self, job_id: int, phase: str, chunk: int) -> None:
    try:
        redispatch = jobs.job_process_chunk(job_id=job_id, phase=phase, chunk=chunk)
    except jobs.JobDeferred as deferred:
        # Retry-After, backoff, or events still pending at Apple. Attempts are capped per item.
        raise self.retry(countdown=min(max(deferred.countdown, 0.1), MAX_COUNTDOWN)) from None
    if redispatch:
        _dispatch(job_id)  # the next phase starts now, without another trip through the broker


@shared_task(name="vpp.jobs_sweep", acks_late=True)
def jobs_sweep() -> list[int]:
    return jobs.jobs_sweep()


@worker_ready.connect
def _recover_after_restart(**_kwargs) -> None:
    """A worker that starts picks up jobs a killed worker left behind (once they look stale)."""
    stale = jobs.job_limits().stale_seconds
    try:
        jobs_sweep.apply_async()
        jobs_sweep.apply_async(countdown=stale + 1)
    except Exception:
        logger.warning("could not schedule the job sweep at worker start", exc_info=True)


# --- full sync, its schedule tick, token health (VPP Server Setting) -----------------------
@shared_task(name="vpp.tasks.sync_tick", ignore_result=True, acks_late=False)
def sync_tick() -> bool:
    """Every minute (the one static Beat entry): start the scheduled sync if it is due.

    The claim is a conditional UPDATE, so two beats or a redelivered tick start one sync.
    """
    from vpp.jobs.phases.full_sync import SyncBlocked, sync_start
    from vpp.services.schedule import schedule_claim_due_run

    if not schedule_claim_due_run():
        return False
    try:
        sync_start(actor=None, trigger="schedule")
    except SyncBlocked as exc:
        from vpp.services.schedule import schedule_record_skip

        schedule_record_skip(reason=exc.reason)
    return True


@shared_task(name="vpp.tasks.sync_run", ignore_result=True, soft_time_limit=1700, time_limit=1800)
def sync_run_task(job_id: int) -> None:
    from vpp.jobs.phases.full_sync import sync_run

    sync_run(job_id=job_id)


@shared_task(name="vpp.tasks.token_health_check", ignore_result=True)
def token_health_check() -> str:
    """Daily: ask Apple about the stored token so the banner changes without anyone looking."""
    from vpp.services.setting import token_check_health

    return token_check_health().health
