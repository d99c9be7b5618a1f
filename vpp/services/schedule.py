"""Next-run computation and the claim of a due scheduled sync.

Time-zone rules (documented on the settings page too):

* **Every N hours** counts elapsed time (UTC arithmetic), so DST never stretches or
  shrinks an interval: a 6-hour schedule runs every 6 real hours. A run missed while
  nothing was ticking is not replayed in a burst: the next slot is the first one after now.
* **Daily at HH:MM** is wall-clock time in the chosen IANA zone:
  - a time that does not exist that day (spring forward, e.g. 02:30 in Europe/Berlin on
    2026-03-29) runs at the first valid instant after it — the moment the clock jumps
    (03:00 local);
  - a time that occurs twice (fall back, e.g. 02:30 on 2026-10-25) runs once, at its
    first occurrence (``fold=0``, still on summer time).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from django.db import transaction
from django.utils import timezone

from vpp.audit import audit_record
from vpp.models import ScheduleMode, SyncResult, SyncSchedule
from vpp.services.business import directory_schedule_tick
from vpp.services.sync import SyncBlocked, sync_start

logger = logging.getLogger(__name__)
UTC = dt.UTC


class UnknownTimeZone(ValueError):
    pass


@cache
def timezone_choices() -> tuple[str, ...]:
    # "localtime"/"Factory" etc. are not places an admin would pick.
    # available_timezones() walks the tz database on disk: once per process is enough.
    return tuple(sorted(name for name in available_timezones() if "/" in name or name == "UTC"))


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UnknownTimeZone(f"{name!r} is not an IANA time zone") from None


def _exists(local: dt.datetime) -> bool:
    """False for a wall time inside a DST gap (it does not round-trip through UTC)."""
    back = local.astimezone(UTC).astimezone(local.tzinfo)
    return back.replace(tzinfo=None) == local.replace(tzinfo=None)


def _gap_end(local: dt.datetime) -> dt.datetime:
    """The instant the clock jumps over a nonexistent wall time (UTC)."""
    # fold=1 maps the gap time with the offset *after* the jump, fold=0 with the one before;
    # the transition lies between the two. Walk in minutes (real transitions are on minutes).
    lo = local.replace(fold=1).astimezone(UTC)
    hi = local.replace(fold=0).astimezone(UTC)
    start, end = min(lo, hi), max(lo, hi)
    before = start.astimezone(local.tzinfo).utcoffset()
    probe = start
    while probe < end and probe.astimezone(local.tzinfo).utcoffset() == before:
        probe += dt.timedelta(minutes=1)
    return probe


def daily_instant(day: dt.date, at: dt.time, tz: ZoneInfo) -> dt.datetime:
    """UTC instant of wall time ``at`` on ``day`` in ``tz`` (gap → jump, overlap → first)."""
    local = dt.datetime.combine(day, at.replace(second=0, microsecond=0, tzinfo=None), tzinfo=tz).replace(fold=0)
    if not _exists(local):
        return _gap_end(local)
    return local.astimezone(UTC)


def next_run_after(
    *,
    mode: str,
    after: dt.datetime,
    interval_hours: int = 24,
    time_of_day: dt.time | None = None,
    tz_name: str = "UTC",
    previous: dt.datetime | None = None,
) -> dt.datetime:
    """The first run strictly after ``after`` (aware)."""
    after = after.astimezone(UTC)
    if mode == ScheduleMode.INTERVAL:
        step = dt.timedelta(hours=max(1, interval_hours))
        if previous is None:
            return (after + step).replace(second=0, microsecond=0)
        missed = max(0, (after - previous) // step)
        candidate = previous + step * missed
        while candidate <= after:
            candidate += step
        return candidate
    tz = zone(tz_name)
    day = after.astimezone(tz).date() - dt.timedelta(days=1)
    while True:
        candidate = daily_instant(day, time_of_day or dt.time(3, 0), tz)
        if candidate > after:
            return candidate
        day += dt.timedelta(days=1)


def schedule_next_run(schedule: SyncSchedule, *, after: dt.datetime, previous: dt.datetime | None = None):
    if not schedule.enabled:
        return None
    return next_run_after(
        mode=schedule.mode,
        after=after,
        interval_hours=schedule.interval_hours,
        time_of_day=schedule.time_of_day,
        tz_name=schedule.timezone,
        previous=previous,
    )


@dataclass(frozen=True)
class ScheduleInput:
    """The admin's schedule: ``interval_hours`` in hours (1–168), ``time_of_day`` wall time in ``timezone`` (IANA)."""

    enabled: bool
    mode: str
    interval_hours: int
    time_of_day: dt.time
    timezone: str


def schedule_update(*, data: ScheduleInput, actor, now: dt.datetime | None = None) -> tuple[SyncSchedule, dict]:
    """Save the admin's schedule, recompute next_run_at in the same transaction, audit the change.

    The tick reads the row every minute, so nothing else needs to be told. Returns the row
    and the changed fields as ``{field: [old, new]}`` (strings). A change is audited as
    ``vpp.schedule_changed`` with ``field="old → new"``; saving the same values records
    nothing. ``actor`` is the admin (None for the system). Raises ``UnknownTimeZone`` for a
    ``data.timezone`` that is not an IANA zone; nothing is stored then.
    """
    zone(data.timezone)
    now = now or timezone.now()
    with transaction.atomic():
        schedule = SyncSchedule.load_for_update()
        changes = {}
        for field in ("enabled", "mode", "interval_hours", "time_of_day", "timezone"):
            old, new = getattr(schedule, field), getattr(data, field)
            if old != new:
                changes[field] = [str(old), str(new)]
                setattr(schedule, field, new)
        if changes or (schedule.enabled and schedule.next_run_at is None):
            schedule.next_run_at = schedule_next_run(schedule, after=now)
        schedule.save()
        if changes:
            audit_record(
                actor=actor,
                action="vpp.schedule_changed",
                details={field: f"{old} → {new}" for field, (old, new) in changes.items()},
            )
    return schedule, changes


def schedule_claim_due_run(*, now: dt.datetime | None = None) -> bool:
    """Claim the due scheduled run, if any. True only for the one caller that won it.

    Compare-and-set on the ``next_run_at`` value this caller saw: a second beat, a
    redelivered tick or a concurrent worker finds the row already moved and gets 0 rows.
    """
    now = now or timezone.now()
    SyncSchedule.objects.filter(pk=1).update(last_tick_at=now)
    schedule = SyncSchedule.objects.filter(pk=1, enabled=True).first()
    if schedule is None or schedule.next_run_at is None or schedule.next_run_at > now:
        return False
    seen = schedule.next_run_at
    following = schedule_next_run(schedule, after=now, previous=seen)
    won = SyncSchedule.objects.filter(pk=1, enabled=True, next_run_at=seen).update(
        next_run_at=following, claimed_at=now
    )
    if won:
        logger.info("scheduled VPP sync claimed (due %s, next %s)", seen.isoformat(), following.isoformat())
    return bool(won)


def schedule_record_skip(*, reason: str, now: dt.datetime | None = None) -> None:
    """A due scheduled run that could not start (e.g. the token expired): say so on the page."""
    SyncSchedule.objects.filter(pk=1).update(
        last_run_at=now or timezone.now(), last_result=SyncResult.SKIPPED, last_detail=reason[:500], last_counts={}
    )


def schedule_tick(*, now: dt.datetime | None = None) -> bool:
    """The one-minute Beat tick: claim a due scheduled run and start the full sync (after the Apple
    Business directory sync when that is on the schedule: vpp/services/business.py).

    Returns True when this caller claimed a run (started, or recorded as skipped because the
    token blocks it). A second beat or a redelivered tick finds the run claimed and does nothing.
    """
    if not schedule_claim_due_run(now=now):
        return False
    if directory_schedule_tick():
        return True  # people first; the directory sync's finish starts the VPP full sync
    try:
        sync_start(actor=None, trigger="schedule")
    except SyncBlocked as exc:
        schedule_record_skip(reason=exc.reason, now=now)
    return True
