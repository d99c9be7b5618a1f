"""Managed device users and their devices.

``User`` here is the *device user* an admin manages, never the console admin (that is
Django's ``auth.User``); the verbose name says so everywhere it shows.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower


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
    # The person's Managed Apple Account (an address of the organisation's Apple Business
    # domain). With one, "Send VPP invitation" links the VPP user silently: Apple associates
    # it at once, no invitation is sent (docs/apple-vpp.md#managed-apple-accounts).
    # Stored lower-case; unique among active users (constraint below).
    managed_apple_account = models.CharField(
        "Managed Apple Account",
        max_length=254,
        blank=True,
        help_text="The person's Managed Apple Account, e.g. jane@corp.example. Leave empty for none.",
    )
    department = models.CharField(max_length=200, blank=True)
    employee_number = models.CharField(max_length=64, blank=True, db_default="")
    # The person's id in Apple Business (``GET /v1/users`` ``id``), set by the directory sync: the
    # key it matches people by. Empty for users that did not come from Apple Business.
    apple_business_id = models.CharField("Apple Business person id", max_length=64, blank=True, db_default="")
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
        constraints = [
            models.UniqueConstraint(
                fields=["apple_business_id"], condition=~Q(apple_business_id=""), name="user_apple_business_id_uniq"
            ),
            # One person per Managed Apple Account: Apple links an account to one VPP user only (9641).
            models.UniqueConstraint(
                Lower("managed_apple_account"),
                condition=Q(is_active=True) & ~Q(managed_apple_account=""),
                name="user_managed_apple_account_active_uniq",
                violation_error_message="Another active user already has this Managed Apple Account.",
            ),
        ]
        indexes = [
            # search_text rides along so a search in name order never touches the table rows.
            models.Index(fields=["display_name", "id", "search_text"], name="user_name_idx"),
            models.Index(fields=["login_id", "id"], name="user_login_idx"),
            models.Index(fields=["email", "id"], name="user_email_idx"),
            # SQLite sorts NULL first, which is the "never seen = oldest" order the page wants;
            # Postgres gets a NULLS-FIRST twin in migration 0002 (SQLite has no such syntax).
            models.Index(fields=["last_seen_at", "id"], name="user_last_seen_idx"),
            models.Index(fields=["department"], name="user_department_idx"),
            # The directory sync matches by Apple Business id, and looks for users without one.
            models.Index(fields=["apple_business_id"], name="user_apple_business_idx"),
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
        self.managed_apple_account = (self.managed_apple_account or "").strip().lower()
        self.search_text = user_search_text(self.display_name, self.login_id, self.email, self.managed_apple_account)
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and SEARCHED_FIELDS & set(update_fields):
            kwargs["update_fields"] = {*update_fields, "search_text"}
        super().save(*args, **kwargs)

    def clean(self) -> None:
        """Validate the Managed Apple Account (an address; raises ValidationError on the field)."""
        super().clean()
        self.managed_apple_account = managed_apple_account_clean(self.managed_apple_account)


# The fields user_search_text reads: a save of any of them rewrites search_text.
SEARCHED_FIELDS = {"display_name", "login_id", "email", "managed_apple_account"}


def user_search_text(display_name: str, login_id: str, email: str, managed_apple_account: str = "") -> str:
    """The lower-cased text the Users page search matches (name, login id, email, Managed Apple Account).

    The one definition for both databases: Postgres searches it with a trigram index, SQLite
    with the FTS5 table kept by triggers (users/migrations/0004, 0005).
    """
    text = f"{display_name} {login_id} {email}"
    if managed_apple_account and managed_apple_account.lower() != (email or "").lower():
        text += f" {managed_apple_account}"
    return text.lower()[:700]


def managed_apple_account_clean(value: str | None) -> str:
    """A Managed Apple Account as stored: stripped and lower-cased, "" for none.

    Raises ValidationError when the value is not an account address (name@domain); Apple's
    ``managedAppleId`` is such an address (https://developer.apple.com/documentation/devicemanagement/requestuser).
    """
    value = (value or "").strip().lower()
    if not value:
        return ""
    try:
        validate_email(value)
    except ValidationError:
        raise ValidationError(
            {"managed_apple_account": f"“{value}” is not a Managed Apple Account (expected name@domain)."}
        ) from None
    return value


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
    # Apple Business's status of the device: ASSIGNED / UNASSIGNED to a device management service
    # (set by the directory sync; empty for devices Apple Business does not list).
    org_status = models.CharField("Apple Business status", max_length=16, blank=True, db_default="")
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
