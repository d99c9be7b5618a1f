"""Bulk VPP jobs and their per-user items (issue 4; docs/vpp-jobs.md#why-jobs-are-built-this-way)."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from vpp.models.fields import OutsideCharField


class JobAction(models.TextChoices):
    INVITE = "invite", "Send VPP invitation"
    DELETE = "delete", "Delete from VPP"
    SYNC = "sync", "Sync VPP"
    # The full sync of the VPP Server Setting page and the schedule: job-level phases on the same
    # engine (vpp/jobs/phases/full_sync.py), started by vpp/services/sync.py (one per token).
    SYNC_ALL = "sync_all", "Full sync with Apple"
    # Apple users a full sync found matching nobody here (orphans), acted on from its result page:
    # retired at Apple (licences revoked first) or adopted as a device user's VPP user
    # (vpp/jobs/phases/orphans.py, started by vpp/services/orphans.py).
    ORPHANS = "orphans", "Act on orphan Apple users"
    # Invited users who gained a Managed Apple Account: linked by users/update, no second create
    # (vpp/jobs/phases/convert.py; a bulk action, and after a scheduled sync when enabled).
    CONVERT = "convert", "Link Managed Apple Accounts"
    # A round of invitation reminders, started by the beat tick (vpp/services/reminders.py).
    REMINDERS = "reminders", "Send invitation reminders"
    # People and devices from Apple Business (vpp/jobs/phases/directory.py, started by
    # vpp/services/business.py); ``selection``: {"dry_run": bool, "groups": [...], "trigger": ...}.
    DIRECTORY = "directory", "Sync people and devices from Apple Business"
    # A CSV import of device users and devices, previewed on the Users page and applied by a
    # job-level phase (vpp/jobs/phases/user_import.py; users/csv_import.py does the work).
    USER_IMPORT = "user_import", "Import users from CSV"


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


FINISHED_JOB_STATUSES = (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)


# What a job started without an admin records as its ``selection["trigger"]`` (vpp/services/sync.py,
# vpp/services/business.py), as the console names it.
JOB_TRIGGERS = {
    "schedule": "the schedule",
    "demo": "the demo set-up",
    "manual": "an admin",
    "directory": "the Apple Business sync",
}


class Job(models.Model):
    action = models.CharField(max_length=16, choices=JobAction.choices)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="vpp_jobs"
    )
    # What the job acts on: a bulk job's users.selectors.UserSelection.to_json() ({"ids": [...]},
    # {"all_matching": true, "filter": {...}}, plus "retry_of" for a retry); a full sync's
    # {"scope": "all", "trigger": "manual" | "schedule"}.
    selection = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    # The phase the workers are on (see vpp/jobs/phases/__init__.py); items carry their own step.
    phase = models.CharField(max_length=16, blank=True)
    total = models.PositiveIntegerField(default=0)
    succeeded = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    # The invite read-back watermark: Apple's users versionId before our first create, moved on
    # by each completed listing (vpp/jobs/readback.py).
    apple_version_id = OutsideCharField(max_length=100, blank=True)
    # Job-level leases (vpp/jobs/leases.py): one chunk at a time sends its creates, so the
    # chunks reach their CPU-heavy steps one after another; one lists the read-back delta.
    create_turn_until = models.DateTimeField(null=True, blank=True)
    readback_lease_until = models.DateTimeField(null=True, blank=True)
    channel = models.CharField(max_length=8, blank=True)  # invitation channel chosen at confirm time
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Workers write this whenever they make progress; the sweeper re-dispatches silent jobs.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # Apple's Retry-After: no request for this job before this instant (shown on the job panel).
    retry_after_until = models.DateTimeField(null=True, blank=True)
    # Invitations that could not go out yet (mail server or APNs down): why, and the next try
    # (the job panel shows it until then; a chunk that fails again sets a later one).
    delivery_retry_until = models.DateTimeField(null=True, blank=True)
    delivery_retry_reason = OutsideCharField(max_length=300, blank=True)
    # A job-level phase (no per-user items to claim, e.g. the full sync's read of Apple's users)
    # is claimed as a whole: the claiming task's token, and how many tasks have claimed it
    # (capped like an item's attempts). See vpp/jobs/engine.py.
    phase_token = models.CharField(max_length=32, blank=True)
    phase_attempts = models.PositiveSmallIntegerField(default=0)
    # What the job is waiting for right now, in a sentence for the panel ("Apple asked us to wait
    # (HTTP 503, Retry-After)", "Redis (the message broker) is unreachable", ...), since when and
    # until when (UTC). Written by vpp/jobs/items.py (job_wait_set / job_wait_clear); empty while
    # the job simply works.
    wait_reason = models.CharField(max_length=300, blank=True)
    waiting_since = models.DateTimeField(null=True, blank=True)
    wait_until = models.DateTimeField(null=True, blank=True)
    # Set when the broker refused the message; the sweeper retries the dispatch.
    enqueue_error = OutsideCharField(max_length=300, blank=True)
    error = OutsideCharField(max_length=500, blank=True)
    retry_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retries")

    class Meta:
        verbose_name = "VPP job"
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status", "heartbeat_at"], name="job_status_idx"),
            models.Index(fields=["-created_at", "-id"], name="job_recent_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_action_display()} #{self.pk} ({self.status})"

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_JOB_STATUSES

    @property
    def title(self) -> str:
        """The job's name in lists and headings: its action, with "(dry run)" for a dry run."""
        label = str(self.get_action_display())
        return f"{label} (dry run)" if (self.selection or {}).get("dry_run") else label

    @property
    def starter(self) -> str:
        """Who started it: the admin's login, else what the job recorded as its trigger
        ("the schedule", "the demo set-up", "an admin"); jobs without one were the schedule's."""
        if self.started_by_id and self.started_by:
            return self.started_by.get_username()
        trigger = (self.selection or {}).get("trigger", "schedule")
        return JOB_TRIGGERS.get(trigger, "the schedule")


class ItemStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    IN_FLIGHT = "in_flight", "In flight"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped"


OPEN_ITEM_STATUSES = (ItemStatus.PENDING, ItemStatus.IN_FLIGHT)


class JobItem(models.Model):
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="items")
    user = models.ForeignKey("users.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    vpp_user = models.ForeignKey(
        "vpp.VppUser", null=True, blank=True, on_delete=models.SET_NULL, related_name="job_items"
    )
    # A snapshot so the result stays readable after the device user is deleted.
    user_label = models.CharField(max_length=300, blank=True)
    status = models.CharField(max_length=16, choices=ItemStatus.choices, default=ItemStatus.PENDING)
    step = models.CharField(max_length=16, blank=True)  # the job phase this item waits for next
    chunk = models.PositiveIntegerField(default=0)
    attempts = models.PositiveSmallIntegerField(default=0)
    claimed_at = models.DateTimeField(null=True, blank=True)  # doubles as the item's heartbeat
    claim_token = models.CharField(max_length=32, blank=True, db_index=True)
    # The VPP status before this job touched the user, restored if the step fails.
    previous_status = models.CharField(max_length=16, blank=True)
    # Set before a mutating request that includes this item goes to Apple: if the worker dies
    # before the answer is stored, the next attempt asks Apple instead of sending it again.
    request_sent_at = models.DateTimeField(null=True, blank=True)
    apple_event_id = OutsideCharField(max_length=100, blank=True)
    # An orphan item's Apple user (clientUserId), before it has a VppUser here (adoption).
    apple_client_user_id = OutsideCharField("clientUserId at Apple", max_length=100, blank=True)
    error_number = models.IntegerField(null=True, blank=True)
    skip_reason = models.CharField(max_length=32, blank=True)
    reason = OutsideCharField(max_length=500, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "VPP job item"
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["job", "user"], name="jobitem_once_per_user")]
        indexes = [
            models.Index(fields=["job", "status"], name="jobitem_status_idx"),
            models.Index(fields=["job", "step", "chunk", "status"], name="jobitem_chunk_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.user_label} in job {self.job_id}: {self.status}"
