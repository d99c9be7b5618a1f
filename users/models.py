"""Managed device users and their devices.

``User`` here is the *device user* an admin manages, never the console admin (that is
Django's ``auth.User``); the verbose name says so everywhere it shows.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class Platform(models.TextChoices):
    IOS = "ios", "iOS"
    IPADOS = "ipados", "iPadOS"
    MACOS = "macos", "macOS"
    ANDROID = "android", "Android"
    WINDOWS = "windows", "Windows"


# Platforms whose users can hold Apple VPP licences.
APPLE_PLATFORMS = (Platform.IOS, Platform.IPADOS, Platform.MACOS)


class ActivationState(models.TextChoices):
    ACTIVATED = "activated", "Activated"
    PENDING = "pending", "Pending"
    DEACTIVATED = "deactivated", "Deactivated"


class User(models.Model):
    display_name = models.CharField(max_length=200)
    login_id = models.CharField("login ID", max_length=150, unique=True)
    email = models.EmailField(blank=True)
    department = models.CharField(max_length=200, blank=True)
    is_active = models.BooleanField("active", default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Denormalised from Device.last_seen_at so the Users page can sort on it cheaply.
    last_seen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "device user"
        verbose_name_plural = "device users"
        ordering = ["display_name", "id"]
        indexes = [
            models.Index(fields=["display_name", "id"], name="user_name_idx"),
            models.Index(fields=["email"], name="user_email_idx"),
            models.Index(fields=["last_seen_at", "id"], name="user_last_seen_idx"),
            models.Index(fields=["department"], name="user_department_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.display_name} ({self.login_id})"


class Device(models.Model):
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="devices")
    platform = models.CharField(max_length=16, choices=Platform.choices)
    activation_state = models.CharField(
        max_length=16, choices=ActivationState.choices, default=ActivationState.PENDING
    )
    serial_number = models.CharField(max_length=64, blank=True)
    model = models.CharField(max_length=100, blank=True)
    os_version = models.CharField("OS version", max_length=32, blank=True)
    enrolled_at = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    # APNs device token of our agent app; cleared when APNs answers 410 Unregistered.
    push_token = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "device"
        ordering = ["user_id", "id"]
        indexes = [
            models.Index(fields=["user", "platform", "activation_state"], name="device_eligibility_idx"),
            models.Index(fields=["platform", "activation_state", "user"], name="device_platform_idx"),
            models.Index(fields=["serial_number"], name="device_serial_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_platform_display()} {self.model or ''} {self.serial_number}".strip()

    @property
    def is_apple(self) -> bool:
        return self.platform in APPLE_PLATFORMS


def activated_apple_device_q(prefix: str = "") -> Q:
    """Q for 'has an activated iOS/iPadOS/macOS device' (the VPP eligibility rule)."""
    return Q(
        **{
            f"{prefix}platform__in": [p.value for p in APPLE_PLATFORMS],
            f"{prefix}activation_state": ActivationState.ACTIVATED,
        }
    )
