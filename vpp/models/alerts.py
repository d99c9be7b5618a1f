"""Alerts to the admins before things break (issue 12): on/off, recipients, and the state each
alert was last raised for, so each is sent once per change of state (vpp/services/alerts.py)."""

from __future__ import annotations

from django.db import models

from vpp.models.singleton import SingletonRow


class AlertSetting(SingletonRow, models.Model):
    """Singleton (pk=1), edited in the Alerts card of the VPP Server Setting page."""

    enabled = models.BooleanField(default=True)
    # Email addresses, one per line; blank: every active admin with the settings permission.
    recipients = models.TextField(blank=True)
    # The state each alert was last evaluated in ("ok" or an alert state, see services/alerts.py);
    # moved with a conditional UPDATE, so concurrent ticks send an alert once.
    token_state = models.CharField(max_length=16, default="ok")
    sync_state = models.CharField(max_length=16, default="ok")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "alert setting"

    def __str__(self) -> str:
        return "VPP alerts"

    @property
    def recipient_list(self) -> list[str]:
        return [line.strip() for line in self.recipients.replace(",", "\n").splitlines() if line.strip()]
