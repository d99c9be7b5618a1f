"""API tokens, idempotency keys, webhook endpoints and deliveries, agent enrolment secrets.

Secrets (tokens, enrolment secrets) are stored as SHA-256 hashes and shown once; a webhook
endpoint's signing secret is stored encrypted (vpp/secrets.py), since we must sign with it.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class ApiToken(models.Model):
    """A bearer token for /api/v1/. ``scopes`` are permission names ("vpp.invite_vppuser"), a
    subset of its creator's at creation; a call may use a scope only while the creator still
    holds it (docs/api.md#authentication)."""

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, db_index=True)  # shown in the console to tell tokens apart
    token_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_used_ip = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        verbose_name = "API token"
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def usable(self) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > timezone.now())


class IdempotencyKey(models.Model):
    """The first answer to a POST with an ``Idempotency-Key`` header, per token: a retry gets it again."""

    token = models.ForeignKey(ApiToken, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=200)
    request_hash = models.CharField(max_length=64)  # SHA-256 of method, path and body
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)  # None while the first is running
    response = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["token", "key"], name="idempotency_once_per_token")]

    def __str__(self) -> str:
        return f"{self.key} ({self.status_code or 'running'})"


class WebhookEndpoint(models.Model):
    url = models.URLField(max_length=500)
    description = models.CharField(max_length=200, blank=True)
    secret_encrypted = models.TextField(editable=False)
    events = models.JSONField(default=list, blank=True)  # event types; empty = all
    is_active = models.BooleanField(default=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "webhook endpoint"
        ordering = ["id"]

    def __str__(self) -> str:
        return self.url

    def wants(self, event_type: str) -> bool:
        return self.is_active and (not self.events or event_type in self.events)


class WebhookDelivery(models.Model):
    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed (gave up)"

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event_id = models.UUIDField(db_index=True)
    event_type = models.CharField(max_length=40)
    payload = models.JSONField()
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    response_ms = models.PositiveIntegerField(null=True, blank=True)
    next_retry_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id} ({self.state})"


class EnrolmentSecret(models.Model):
    """A per-device secret the agent app sends to register its APNs push token."""

    device = models.ForeignKey("users.Device", on_delete=models.CASCADE, related_name="enrolment_secrets")
    prefix = models.CharField(max_length=12)
    secret_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_used_ip = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"enrolment secret {self.prefix}… for device {self.device_id}"
