"""The Apple Business API account (Setting › Apple Business) and its directory sync state."""

from __future__ import annotations

from django.db import models

from vpp.models.schedule import SyncResult
from vpp.models.setting import TokenHealth
from vpp.models.singleton import SingletonRow


class AppleBusinessSetting(SingletonRow, models.Model):
    """Singleton (pk=1). The private key is stored encrypted like the content token (vpp/secrets.py)
    and never shown again. Health uses the content token's states (valid, invalid, missing ...)."""

    client_id = models.CharField("client ID", max_length=200, blank=True)
    key_id = models.CharField("key ID", max_length=100, blank=True)
    private_key_encrypted = models.TextField(blank=True, editable=False)
    key_uploaded_at = models.DateTimeField(null=True, blank=True)
    # Overrides settings.APPLE_BUSINESS_API_URL / _TOKEN_URL (the sandbox); blank = Apple.
    api_base_url = models.URLField(blank=True)
    token_url = models.URLField(blank=True)

    health = models.CharField(max_length=16, choices=TokenHealth.choices, default=TokenHealth.MISSING)
    health_detail = models.CharField(max_length=500, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    # What "Check connection" found: the organisation (its top organizational unit), counts, groups.
    org_name = models.CharField("organisation", max_length=200, blank=True)
    people_count = models.PositiveIntegerField(null=True, blank=True)
    device_count = models.PositiveIntegerField(null=True, blank=True)
    groups = models.JSONField(default=list, blank=True)  # [{"id", "name", "type", "members"}]

    # Optional scope: only the members of these user groups are synced (empty: everyone).
    scope_group_ids = models.JSONField(default=list, blank=True)
    # Sync people and devices on the schedule tick (with the VPP full sync's schedule).
    on_schedule = models.BooleanField("sync on the schedule", default=False)

    # The sync: the job running now (one at a time), the last one, and its result.
    running_job_id = models.BigIntegerField(null=True, blank=True)
    last_job_id = models.BigIntegerField(null=True, blank=True)
    last_dry_run_job_id = models.BigIntegerField(null=True, blank=True)
    last_result = models.CharField(max_length=16, choices=SyncResult.choices, blank=True)
    last_counts = models.JSONField(default=dict, blank=True)
    dry_run_counts = models.JSONField(default=dict, blank=True)  # what the last dry run would change
    last_finished_at = models.DateTimeField(null=True, blank=True)
    # Set by the first real (not dry) run that finished: before it, a dry run must come first.
    first_sync_at = models.DateTimeField(null=True, blank=True)

    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "Apple Business setting"

    def __str__(self) -> str:
        return "Apple Business setting"

    @property
    def configured(self) -> bool:
        return bool(self.private_key_encrypted and self.client_id and self.key_id)
