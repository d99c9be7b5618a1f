"""Celery tasks: ids in, one service call each; the retry policy lives here (docs/vpp-jobs.md).

Every task is named ``vpp.<name>`` and is safe to run twice (claims are conditional UPDATEs).
"""

from __future__ import annotations

import logging
import threading
import time

from celery import shared_task
from celery.exceptions import Retry
from celery.signals import worker_process_init, worker_ready

from vpp.jobs import engine, items
from vpp.jobs.phases import directory
from vpp.services import alerts, business, convert, reminders, schedule, setting

logger = logging.getLogger(__name__)

# Waits longer than this go through the sweeper, never into a broker ETA (visibility timeout).
MAX_COUNTDOWN = 900


@shared_task(name=engine.DISPATCH_TASK, acks_late=True)
def job_dispatch(job_id: int) -> None:
    """Start or resume job ``job_id``: one ``vpp.job_chunk`` per chunk of its current phase."""
    _dispatch(job_id)


def _dispatch(job_id: int) -> None:
    for phase, chunk in engine.job_dispatch(job_id=job_id):
        try:
            job_chunk.apply_async(args=[job_id, phase, chunk], **engine.job_task_options(phase))
        except Exception as exc:  # noqa: BLE001 - kombu OperationalError and friends: the broker is down
            engine.job_broker_unreachable(job_id=job_id, exc=exc)  # the sweeper dispatches it again
            return


@shared_task(name="vpp.job_chunk", bind=True, acks_late=True, max_retries=None)
def job_chunk(self, job_id: int, phase: str, chunk: int) -> None:
    """Run one chunk of one phase; Apple's Retry-After and pending events re-queue it with a countdown."""
    try:
        redispatch = engine.job_process_chunk(job_id=job_id, phase=phase, chunk=chunk)
    except engine.JobDeferred as deferred:
        # Retry-After, backoff, or events still pending at Apple. Attempts are capped per item.
        try:
            raise self.retry(
                countdown=min(max(deferred.countdown, 0.1), MAX_COUNTDOWN), **engine.job_task_options(phase)
            ) from None
        except Retry:
            raise
        except Exception as exc:  # noqa: BLE001 - the retry could not be published: the broker is down
            engine.job_broker_unreachable(job_id=job_id, exc=exc)  # the sweeper dispatches it again
            return
    if redispatch:
        _dispatch(job_id)  # the next phase starts now, without another trip through the broker


@shared_task(name="vpp.jobs_sweep", acks_late=True)
def jobs_sweep() -> list[int]:
    """Every minute: re-dispatch jobs whose worker died or whose enqueue failed."""
    return engine.jobs_sweep()


@worker_process_init.connect
def _heartbeat_from_threads(**_kwargs) -> None:
    """In every pool process: a running chunk heartbeats from a thread, whatever it waits for."""
    items.heartbeat_threads_enable()


_sweeper_started = threading.Event()


@worker_ready.connect
def _sweep_while_running(**_kwargs) -> None:
    """Every worker sweeps at start and every ``sweep_seconds`` while it runs, beat or no beat:
    a job a killed worker left behind resumes within stale + sweep seconds of a worker running
    (docs/operations.md#recovery). The sweep runs in a thread of the worker's main process, so
    busy pool processes cannot delay it."""
    if _sweeper_started.is_set():
        return
    _sweeper_started.set()
    threading.Thread(target=_sweep_loop, name="vpp-jobs-sweeper", daemon=True).start()


def _sweep_loop() -> None:
    from django.db import close_old_connections, connection

    while True:
        try:
            close_old_connections()
            redispatched = engine.jobs_sweep()
            if redispatched:
                logger.warning("sweeper: resumed jobs %s", redispatched)
        except Exception:
            logger.warning("job sweep failed", exc_info=True)
            connection.close()
        time.sleep(engine.job_limits().sweep_seconds)


@shared_task(name="vpp.sync_tick", ignore_result=True, acks_late=False)
def sync_tick() -> bool:
    """Every minute (the one static Beat entry): start the scheduled full sync if it is due, link
    Managed Apple Accounts after a finished scheduled sync, start a reminders round if one is due,
    then send the alerts whose state changed (token expiring, sync failing: vpp/services/alerts.py).

    Each part claims its own work with a compare-and-set, so a redelivered tick does nothing twice.
    """
    started = schedule.schedule_tick()
    for part in (convert.convert_tick, reminders.reminders_tick, alerts.alerts_check):
        try:
            part()
        except Exception:  # one part failing must not stop the others (the next tick tries again)
            logger.exception("VPP beat tick: %s failed", part.__name__)
    return started


@shared_task(name="vpp.token_health_check", ignore_result=True)
def token_health_check() -> str:
    """Daily: ask Apple about the stored token so the banner (and the alerts) change without anyone looking."""
    health = setting.token_check_health().health
    alerts.alerts_check()
    return health


@shared_task(name=directory.FOLLOW_UP_TASK, ignore_result=True, acks_late=True)
def directory_follow_up(job_id: int) -> int | None:
    """After a directory sync: the VPP full sync that retires the people it deactivated."""
    job = business.directory_follow_up(job_id=job_id)
    return job.pk if job else None
