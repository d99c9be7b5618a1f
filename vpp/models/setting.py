"""The one VPP server setting row (Setting › iOS/macOS › VPP Server Setting)."""

from __future__ import annotations

import uuid

from django.db import models

from vpp.models.fields import OutsideCharField
from vpp.models.singleton import SingletonRow


class AssignmentMethod(models.TextChoices):
    USER = "user", "User-based (licences assigned to VPP users)"
    DEVICE = "device", "Device-based (licences assigned to serial numbers)"


class InvitationChannel(models.TextChoices):
    PUSH = "push", "Push notification to the agent app"
    EMAIL = "email", "Email"
    BOTH = "both", "Push notification and email"


class TokenHealth(models.TextChoices):
    MISSING = "missing", "No content token"
    VALID = "valid", "Valid"
    EXPIRING = "expiring", "Expires within 30 days"
    EXPIRED = "expired", "Expired"
    REVOKED = "revoked", "Revoked"
    INVALID = "invalid", "Invalid"
    OTHER_MDM = "other_mdm", "Managed by another MDM"


class VppServerSetting(SingletonRow, models.Model):
    """Singleton (pk=1). Secrets are stored encrypted (see vpp/secrets.py), never shown again."""

    # Content token (.vpptoken), MultiFernet-encrypted.
    content_token_encrypted = models.TextField(blank=True, editable=False)
    token_org_name = OutsideCharField(max_length=200, blank=True)
    token_expires_at = models.DateTimeField(null=True, blank=True)
    # The uploaded file's expDate; Apple's tokenExpirationDate can lag behind it after a renewal.
    token_file_expires_at = models.DateTimeField(null=True, blank=True)
    token_uploaded_at = models.DateTimeField(null=True, blank=True)
    token_uid = OutsideCharField("library uId", max_length=100, blank=True)
    location_name = OutsideCharField(max_length=200, blank=True)
    country_code = OutsideCharField(max_length=2, blank=True)
    token_health = models.CharField(max_length=16, choices=TokenHealth.choices, default=TokenHealth.MISSING)
    token_health_detail = OutsideCharField(max_length=500, blank=True)
    token_health_checked_at = models.DateTimeField(null=True, blank=True)
    # mdmInfo.name Apple reports for the location when it is not ours (health "other_mdm").
    other_mdm_name = OutsideCharField("other MDM", max_length=200, blank=True)
    # When kmconsole last wrote its own mdmInfo to Apple (claimed the location).
    mdm_claimed_at = models.DateTimeField(null=True, blank=True)
    # Overrides settings.VPP_API_BASE_URL (e.g. the sandbox); blank means Apple production.
    api_base_url = models.URLField(blank=True)

    assignment_method = models.CharField(max_length=8, choices=AssignmentMethod.choices, default=AssignmentMethod.USER)

    invitation_channel = models.CharField(
        max_length=8, choices=InvitationChannel.choices, default=InvitationChannel.EMAIL
    )
    invitation_sender = models.CharField(max_length=254, blank=True)
    invitation_subject = models.CharField(max_length=200, default="Join {organisation}'s app programme")
    invitation_body_text = models.TextField(
        default=(
            "Hello {user_name},\n\n{organisation} invites you to receive apps and books through "
            "Apple's Volume Purchase Program. Open this link on your device and sign in with your "
            "Apple Account:\n\n{invitation_link}\n"
        )
    )
    invitation_body_html = models.TextField(blank=True)

    # Our identity towards Apple (mdmInfo.id); minted once per installation.
    mdm_id = models.UUIDField(default=uuid.uuid4, editable=False)
    # Apple notifications: our public URL and the bearer token Apple sends back to us.
    notification_url = models.URLField(blank=True)
    notification_auth_token_encrypted = models.TextField(blank=True, editable=False)
    notification_configured_at = models.DateTimeField(null=True, blank=True)

    # Link invited users who gained a Managed Apple Account (users/update) after each scheduled
    # sync (vpp/services/convert.py).
    convert_during_sync = models.BooleanField("link Managed Apple Accounts during the scheduled sync", default=False)
    # Invitation reminders (vpp/services/reminders.py): after ``reminder_after_days`` days without
    # acceptance, the invitation again, at most ``reminder_max`` times; with escalation the first
    # reminder goes by push notification and later ones by email.
    reminders_enabled = models.BooleanField("send reminders", default=False)
    reminder_after_days = models.PositiveSmallIntegerField("days without acceptance before a reminder", default=7)
    reminder_max = models.PositiveSmallIntegerField("reminders at most", default=2)
    reminder_escalate = models.BooleanField("escalate: push notification first, then email", default=False)
    # When the beat tick last started a reminders round (compare-and-set: one round per tick).
    reminders_last_round_at = models.DateTimeField(null=True, blank=True, editable=False)

    # First-page versionId of the last full/delta sync, for the next delta (sinceVersionId).
    users_version_id = OutsideCharField(max_length=100, blank=True)

    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "VPP server setting"

    def __str__(self) -> str:
        return "VPP server setting"

    @property
    def has_token(self) -> bool:
        return bool(self.content_token_encrypted)

    @property
    def user_based(self) -> bool:
        return self.assignment_method == AssignmentMethod.USER
