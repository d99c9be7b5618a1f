"""Next-run computation across the 2026 DST changes, saving the schedule, and tick claiming."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
import time_machine
from django.db import connection

from vpp import tasks
from vpp.models import ScheduleMode, SyncResult, SyncSchedule
from vpp.services import schedule as sched

UTC = dt.UTC


def utc(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def daily(after, at, tz):
    return sched.next_run_after(mode=ScheduleMode.DAILY, after=after, time_of_day=at, tz_name=tz)


@pytest.mark.parametrize(
    ("tz", "at", "after", "expected", "why"),
    [
        # Europe/Berlin, spring forward 2026-03-29 02:00 CET → 03:00 CEST (01:00 UTC).
        ("Europe/Berlin", dt.time(2, 30), utc(2026, 3, 28, 12), utc(2026, 3, 29, 1, 0), "gap: runs at the jump"),
        ("Europe/Berlin", dt.time(2, 30), utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30), "day after: CEST"),
        ("Europe/Berlin", dt.time(2, 0), utc(2026, 3, 28, 12), utc(2026, 3, 29, 1, 0), "02:00 itself is skipped"),
        ("Europe/Berlin", dt.time(3, 0), utc(2026, 3, 28, 12), utc(2026, 3, 29, 1, 0), "03:00 exists"),
        ("Europe/Berlin", dt.time(1, 59), utc(2026, 3, 28, 12), utc(2026, 3, 29, 0, 59), "before the gap"),
        # Europe/Berlin, fall back 2026-10-25 03:00 CEST → 02:00 CET (01:00 UTC).
        ("Europe/Berlin", dt.time(2, 30), utc(2026, 10, 24, 12), utc(2026, 10, 25, 0, 30), "overlap: first"),
        ("Europe/Berlin", dt.time(2, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30), "runs once"),
        ("Europe/Berlin", dt.time(9, 0), utc(2026, 10, 25, 6), utc(2026, 10, 25, 8, 0), "09:00 CET"),
        # America/New_York, spring forward 2026-03-08 02:00 EST → 03:00 EDT (07:00 UTC).
        ("America/New_York", dt.time(2, 30), utc(2026, 3, 7, 12), utc(2026, 3, 8, 7, 0), "gap: runs at the jump"),
        ("America/New_York", dt.time(9, 0), utc(2026, 3, 7, 15), utc(2026, 3, 8, 13, 0), "09:00 EDT"),
        ("America/New_York", dt.time(9, 0), utc(2026, 3, 6, 15), utc(2026, 3, 7, 14, 0), "09:00 EST"),
        # America/New_York, fall back 2026-11-01 02:00 EDT → 01:00 EST (06:00 UTC).
        ("America/New_York", dt.time(1, 30), utc(2026, 10, 31, 12), utc(2026, 11, 1, 5, 30), "overlap: first"),
        ("America/New_York", dt.time(1, 30), utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30), "runs once"),
        ("America/New_York", dt.time(23, 0), utc(2026, 11, 1, 12), utc(2026, 11, 2, 4, 0), "evening EST"),
    ],
)
def test_it_computes_daily_runs_across_dst(tz, at, after, expected, why):
    assert daily(after, at, tz) == expected, why


def test_it_counts_real_hours_for_intervals_across_dst():
    previous = utc(2026, 3, 28, 23)  # 00:00 CET in Berlin; the clocks jump at 01:00 UTC
    nxt = sched.next_run_after(mode=ScheduleMode.INTERVAL, interval_hours=6, after=previous, previous=previous)
    assert nxt == utc(2026, 3, 29, 5)


def test_it_skips_missed_interval_slots_instead_of_replaying_them():
    previous = utc(2026, 11, 1, 0)
    nxt = sched.next_run_after(
        mode=ScheduleMode.INTERVAL, interval_hours=4, after=utc(2026, 11, 1, 13, 5), previous=previous
    )
    assert nxt == utc(2026, 11, 1, 16)


def test_it_rejects_an_unknown_time_zone():
    with pytest.raises(sched.UnknownTimeZone):
        sched.zone("Mars/Olympus_Mons")
    assert "Europe/Berlin" in sched.timezone_choices()


def _save(**overrides):
    data = {
        "enabled": True,
        "mode": ScheduleMode.DAILY,
        "interval_hours": 24,
        "time_of_day": dt.time(2, 30),
        "timezone": "Europe/Berlin",
        **overrides,
    }
    return sched.schedule_update(data=sched.ScheduleInput(**data), actor=None)


@pytest.mark.django_db
def test_it_claims_a_due_run_once_through_the_tick(monkeypatch):
    started = []
    monkeypatch.setattr(sched, "sync_start", lambda **kw: started.append(kw))
    with time_machine.travel(utc(2026, 3, 28, 12), tick=False) as traveller:
        schedule, changes = _save()
        assert schedule.next_run_at == utc(2026, 3, 29, 1, 0)
        assert changes["enabled"] == ["False", "True"]
        assert tasks.sync_tick() is False  # not due yet
        traveller.move_to(utc(2026, 3, 29, 1, 0, 20))
        assert tasks.sync_tick() is True
        assert tasks.sync_tick() is False  # a redelivered / second tick in the same minute
    assert started == [{"actor": None, "trigger": "schedule"}]
    schedule.refresh_from_db()
    assert schedule.next_run_at == utc(2026, 3, 30, 0, 30)
    assert schedule.claimed_at == utc(2026, 3, 29, 1, 0, 20)
    assert schedule.last_tick_at == utc(2026, 3, 29, 1, 0, 20)


@pytest.mark.django_db
def test_it_does_not_tick_a_disabled_schedule(monkeypatch):
    monkeypatch.setattr(sched, "sync_start", lambda **kw: pytest.fail("must not start"))
    with time_machine.travel(utc(2026, 6, 1, 12), tick=False) as traveller:
        _save()
        _save(enabled=False)
        assert SyncSchedule.load().next_run_at is None
        traveller.move_to(utc(2026, 6, 3))
        assert tasks.sync_tick() is False


@pytest.mark.django_db
def test_it_records_a_skipped_run_when_the_token_blocks_the_sync():
    with time_machine.travel(utc(2026, 6, 1, 12), tick=False) as traveller:
        _save(mode=ScheduleMode.INTERVAL, interval_hours=1)
        traveller.move_to(utc(2026, 6, 1, 13, 0, 30))
        assert tasks.sync_tick() is True
    schedule = SyncSchedule.load()
    assert schedule.last_result == SyncResult.SKIPPED
    assert "No content token" in schedule.last_detail
    assert schedule.next_run_at == utc(2026, 6, 1, 14)


@pytest.mark.django_db(transaction=True)
def test_it_starts_one_sync_when_two_ticks_race(monkeypatch):
    """Two workers tick at the same instant (threads, each with its own DB connection)."""
    started = []
    monkeypatch.setattr(sched, "sync_start", lambda **kw: started.append(kw))
    with time_machine.travel(utc(2026, 6, 1, 12), tick=False):
        _save(mode=ScheduleMode.INTERVAL, interval_hours=2)
    due = SyncSchedule.load().next_run_at
    barrier = threading.Barrier(4)
    results = []

    def tick():
        try:
            barrier.wait()
            results.append(sched.schedule_claim_due_run(now=due + dt.timedelta(seconds=5)))
        finally:
            connection.close()

    threads = [threading.Thread(target=tick) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False, False, False, True]
    assert SyncSchedule.load().next_run_at == due + dt.timedelta(hours=2)
