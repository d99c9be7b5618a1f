"""The automatic sync schedule (one row, edited on the VPP Server Setting page).

A single static Celery Beat entry ticks every minute (settings.CELERY_BEAT_SCHEDULE) and
*claims* a due run with a conditional UPDATE on ``next_run_at`` (vpp/services/schedule.py),
so the schedule itself never lives in Beat and a saved change applies at the next tick.
"""

from __future__ import annotations

import datetime as dt

from django.db import models

from vpp.models.fields import OutsideCharField
from vpp.models.singleton import SingletonRow


class ScheduleMode(models.TextChoices):
    INTERVAL = "interval", "Every N hours"
    DAILY = "daily", "Daily at a time of day"


class SyncResult(models.TextChoices):
    NONE = "", "Never run"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    PARTIAL = "partial", "Finished with failures"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped"


class SyncSchedule(SingletonRow, models.Model):
    """Singleton (pk=1)."""

    enabled = models.BooleanField(default=False)
    mode = models.CharField(max_length=8, choices=ScheduleMode.choices, default=ScheduleMode.DAILY)
    interval_hours = models.PositiveSmallIntegerField(default=24)
    time_of_day = models.TimeField(default=dt.time(3, 0))
    timezone = models.CharField(max_length=64, default="UTC")

    # UTC instant of the next due run; NULL while disabled. The tick claims a run by
    # moving this forward with a conditional UPDATE (compare-and-set on the seen value).
    next_run_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    last_tick_at = models.DateTimeField(null=True, blank=True)  # beat heartbeat

    # The last sync, whatever started it (schedule or "Sync now").
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_finished_at = models.DateTimeField(null=True, blank=True)
    last_result = models.CharField(max_length=10, choices=SyncResult.choices, default=SyncResult.NONE, blank=True)
    last_counts = models.JSONField(default=dict, blank=True)
    last_detail = OutsideCharField(max_length=500, blank=True)
    last_job_id = models.BigIntegerField(null=True, blank=True)
    # The scheduled sync job after which Managed Apple Accounts were last linked (vpp/services/convert.py).
    converted_after_job_id = models.BigIntegerField(null=True, blank=True)
    # The one full sync allowed at a time for the (single) token: claimed with a conditional
    # UPDATE (running_job_id IS NULL → job id) in the transaction that creates the job.
    running_job_id = models.BigIntegerField(null=True, blank=True)

    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "sync schedule"

    def __str__(self) -> str:
        return "VPP sync schedule"
