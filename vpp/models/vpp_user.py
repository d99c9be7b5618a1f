"""VppUser: a device user as Apple's VPP service knows them (lifecycle: docs/apple-vpp.md#user-statuses)."""

from __future__ import annotations

import uuid

from django.db import models

from vpp.apple.types import UserStatus
from vpp.models.fields import OutsideCharField, OutsideEmailField


class VppUserStatus(models.TextChoices):
    # "Not a VPP user" is the absence of a row.
    PENDING = "pending", "Pending"  # create sent, event not finished
    INVITED = "invited", "Invited"  # Apple "Registered", inviteCode known
    ASSOCIATED = "associated", "Associated"  # accepted; Apple "Associated"
    RETIRED = "retired", "Retired"  # deleted from VPP; may be invited again

    @classmethod
    def from_apple(cls, apple_status: str, current: str) -> str:
        """Our status for Apple's user status (``current`` when Apple sent one we do not know).

        The one mapping between Apple's user statuses and ours: Registered → invited,
        Associated → associated, Retired and Deleted → retired (docs/apple-vpp.md#user-statuses).
        Apple's statuses: https://developer.apple.com/documentation/devicemanagement/managing-users
        """
        return APPLE_TO_LOCAL.get(apple_status, current)


# Apple's statuses (vpp.apple.types.UserStatus) → ours. Read through VppUserStatus.from_apple.
APPLE_TO_LOCAL = {
    UserStatus.REGISTERED: VppUserStatus.INVITED,
    UserStatus.ASSOCIATED: VppUserStatus.ASSOCIATED,
    UserStatus.RETIRED: VppUserStatus.RETIRED,
    UserStatus.DELETED: VppUserStatus.RETIRED,
}
# Ours that Apple counts as an active VPP user (pending: our create may be in flight).
ACTIVE_VPP_STATUSES = (VppUserStatus.PENDING, VppUserStatus.INVITED, VppUserStatus.ASSOCIATED)


class VppUser(models.Model):
    # SET_NULL: the VPP record (and its clientUserId) outlives a deleted device user, so the
    # id is never minted again for somebody else and the history stays readable.
    user = models.OneToOneField("users.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="vpp_user")
    # Apple's rule: a stable, unique id per person that is never an email and never reused.
    client_user_id = models.UUIDField("clientUserId", default=uuid.uuid4, unique=True, editable=False)
    status = models.CharField(max_length=16, choices=VppUserStatus.choices, default=VppUserStatus.PENDING)
    apple_email = OutsideEmailField("email at Apple", blank=True)
    invite_code = OutsideCharField(max_length=100, blank=True)
    id_hash = OutsideCharField("idHash", max_length=200, blank=True)
    # "" = the organizational unit of the stored token. When a token of another unit replaces
    # it, the rows of the old unit keep its uId here and let go of their device user
    # (kept in ``former_user``, for history): they are no VPP users of the new unit.
    unit_uid = OutsideCharField("organizational unit uId", max_length=100, blank=True)
    former_user = models.ForeignKey(
        "users.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="former_vpp_users"
    )
    # The Managed Apple Account Apple linked this user with (Apple never echoes it back:
    # docs/apple-vpp.md#managed-apple-accounts); names the holder when Apple answers 9641.
    managed_apple_account = models.CharField("linked Managed Apple Account", max_length=254, blank=True)
    invited_at = models.DateTimeField(null=True, blank=True)
    invitation_count = models.PositiveIntegerField(default=0)
    # Reminders sent since the last invitation an admin sent (vpp/services/reminders.py).
    reminders_sent = models.PositiveSmallIntegerField(default=0)
    last_invitation_channel = models.CharField(max_length=16, blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    last_error_number = models.IntegerField(null=True, blank=True)
    last_error_message = OutsideCharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "VPP user"
        ordering = ["id"]
        indexes = [
            models.Index(fields=["status", "user"], name="vppuser_status_idx"),
            models.Index(fields=["id_hash"], name="vppuser_idhash_idx"),  # "Shared Apple Account"
        ]
        permissions = [
            ("invite_vppuser", "Can send VPP invitations"),
            ("sync_vppuser", "Can sync VPP users"),
        ]
        # delete_vppuser comes with Django's default permissions ("Delete from VPP").

    def __str__(self) -> str:
        return f"VPP user {self.client_user_id} ({self.status})"


class InvitationDelivery(models.Model):
    """One invitation sent over one channel for one job: the unique row is the idempotency key.

    A redelivered task finds the row and does not send again (at most once per job and channel).
    """

    class State(models.TextChoices):
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    vpp_user = models.ForeignKey(VppUser, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.CharField(max_length=16)
    job = models.ForeignKey("vpp.Job", on_delete=models.CASCADE, related_name="deliveries")
    link = models.URLField(max_length=500)
    state = models.CharField(max_length=8, choices=State.choices, default=State.SENDING)
    error = OutsideCharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "invitation delivery"
        verbose_name_plural = "invitation deliveries"
        constraints = [
            models.UniqueConstraint(fields=["vpp_user", "channel", "job"], name="delivery_once_per_round"),
        ]

    def __str__(self) -> str:
        return f"{self.channel} invitation to {self.vpp_user_id} ({self.state})"
