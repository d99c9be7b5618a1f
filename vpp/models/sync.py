"""What a full sync found: one SyncRun per sync Job, and the Apple users nobody here knows."""

from __future__ import annotations

from django.db import models

from vpp.models.fields import OutsideCharField


class SyncRun(models.Model):
    job = models.OneToOneField("vpp.Job", on_delete=models.CASCADE, related_name="sync_run")
    trigger = models.CharField(max_length=10)  # "schedule" | "manual"
    full = models.BooleanField(default=True)  # False: a delta from since_version_id
    since_version_id = OutsideCharField(max_length=100, blank=True)
    version_id = OutsideCharField(max_length=100, blank=True)  # first page's versionId (next delta)
    counts = models.JSONField(default=dict, blank=True)

    class Meta:
        verbose_name = "VPP sync run"

    def __str__(self) -> str:
        return f"sync run of job {self.job_id}"


class SyncOrphan(models.Model):
    """An Apple user whose clientUserId matches no VppUser here (listed, not deleted, not ignored)."""

    run = models.ForeignKey(SyncRun, on_delete=models.CASCADE, related_name="orphans")
    client_user_id = OutsideCharField(max_length=100)
    apple_status = OutsideCharField(max_length=16)
    email = OutsideCharField(max_length=254, blank=True)
    id_hash = OutsideCharField(max_length=200, blank=True)

    class Meta:
        verbose_name = "orphan Apple user"
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["run", "client_user_id"], name="syncorphan_once_per_run")]

    def __str__(self) -> str:
        return f"orphan {self.client_user_id}"
