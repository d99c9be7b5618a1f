"""Append-only audit trail of bulk actions (who, what, how many, when, from where)."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from vpp.models.fields import OutsideCharField


class AuditEvent(models.Model):
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_name = models.CharField(max_length=150, blank=True)  # kept if the admin account goes
    action = models.CharField(max_length=32)
    # Sentences that quote outside text (a location name, a search, Apple's errors): clipped, never refused.
    target_summary = OutsideCharField(max_length=500, blank=True)
    count = models.PositiveIntegerField(default=0)
    outcome = OutsideCharField(max_length=200, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    job = models.ForeignKey("vpp.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = "audit event"
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor_name} {self.action} ({self.count})"

    def save(self, *args, **kwargs):
        # Append-only: a row is written once and never changed.
        if self.pk is not None and not self._state.adding:
            raise ValueError("audit events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("audit events are append-only")
