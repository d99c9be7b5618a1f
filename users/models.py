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
    # --- Denormalised from the user's devices (users.services.user_device_summary_refresh,
    # kept current by Device save/delete signals). With 100,000 users the Users page must
    # filter and count with indexes, not with sub-queries over the devices table.
    last_seen_at = models.DateTimeField(null=True, blank=True)
    has_activated_apple_device = models.BooleanField("has an activated iOS/macOS device", default=False)
    has_ios = models.BooleanField("has an iOS device", default=False)
    has_ipados = models.BooleanField("has an iPadOS device", default=False)
    has_macos = models.BooleanField("has a macOS device", default=False)
    has_android = models.BooleanField("has an Android device", default=False)
    has_windows = models.BooleanField("has a Windows device", default=False)
    # Lower-cased "name login email", filled in save(): one LIKE per row instead of three.
    search_text = models.CharField(max_length=700, blank=True, editable=False)

    class Meta:
        verbose_name = "device user"
        verbose_name_plural = "device users"
        ordering = ["display_name", "id"]
        indexes = [
            # search_text rides along so a search in name order never touches the table rows.
            models.Index(fields=["display_name", "id", "search_text"], name="user_name_idx"),
            models.Index(fields=["login_id", "id"], name="user_login_idx"),
            models.Index(fields=["email", "id"], name="user_email_idx"),
            # SQLite sorts NULL first, which is the "never seen = oldest" order the page wants;
            # Postgres gets a NULLS-FIRST twin in migration 0002 (SQLite has no such syntax).
            models.Index(fields=["last_seen_at", "id"], name="user_last_seen_idx"),
            models.Index(fields=["department"], name="user_department_idx"),
            # Partial indexes: a filtered page walks, and its COUNT reads, only the matching
            # rows; the extra columns make a combined filter/search index-only.
            models.Index(
                fields=["display_name", "id", "search_text"],
                condition=Q(has_activated_apple_device=True),
                name="user_apple_active_idx",
            ),
            models.Index(
                fields=["display_name", "id", "search_text"],
                condition=Q(has_activated_apple_device=False),
                name="user_apple_inactive_idx",
            ),
            # Eligible for VPP (active, an activated Apple device): the VPP overview counts them.
            models.Index(
                fields=["id"], condition=Q(is_active=True, has_activated_apple_device=True), name="user_eligible_idx"
            ),
            *[
                models.Index(
                    fields=["display_name", "id", "has_activated_apple_device", "search_text"],
                    condition=Q(**{f"has_{platform}": True}),
                    name=f"user_has_{platform}_idx",
                )
                for platform in ("ios", "ipados", "macos", "android", "windows")
            ],
        ]

    def __str__(self) -> str:
        return f"{self.display_name} ({self.login_id})"

    def save(self, *args, **kwargs):
        self.search_text = user_search_text(self.display_name, self.login_id, self.email)
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and {"display_name", "login_id", "email"} & set(update_fields):
            kwargs["update_fields"] = {*update_fields, "search_text"}
        super().save(*args, **kwargs)


def user_search_text(display_name: str, login_id: str, email: str) -> str:
    return f"{display_name} {login_id} {email}".lower()[:700]


# User flag per platform (User.has_<platform>), for filters and the summary refresh.
PLATFORM_FLAGS = {
    "ios": "has_ios",
    "ipados": "has_ipados",
    "macos": "has_macos",
    "android": "has_android",
    "windows": "has_windows",
}


class Device(models.Model):
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="devices")
    platform = models.CharField(max_length=16, choices=Platform.choices)
    activation_state = models.CharField(max_length=16, choices=ActivationState.choices, default=ActivationState.PENDING)
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


def activated_apple_device_q(prefix: str = "") -> Q:
    """Q for 'has an activated iOS/iPadOS/macOS device' (the VPP eligibility rule)."""
    return Q(
        **{
            f"{prefix}platform__in": [p.value for p in APPLE_PLATFORMS],
            f"{prefix}activation_state": ActivationState.ACTIVATED,
        }
    )
