"""Celery tasks of the vpp app: thin wrappers that take ids and call one service."""

from __future__ import annotations

import logging

from celery import shared_task

logger = logging.getLogger(__name__)


@shared_task(name="vpp.tasks.sync_tick", ignore_result=True, acks_late=False)
def sync_tick() -> bool:
    """Every minute (the one static Beat entry): start the scheduled sync if it is due.

    The claim is a conditional UPDATE, so two beats or a redelivered tick start one sync.
    """
    from vpp.services.schedule import schedule_claim_due_run
    from vpp.services.sync import SyncBlocked, sync_start

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
    from vpp.services.sync import sync_run

    sync_run(job_id=job_id)


@shared_task(name="vpp.tasks.token_health_check", ignore_result=True)
def token_health_check() -> str:
    """Daily: ask Apple about the stored token so the banner changes without anyone looking."""
    from vpp.services.setting import token_check_health

    return token_check_health().health
