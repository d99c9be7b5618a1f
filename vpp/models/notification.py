"""Apple's notifications as received (de-duplicated on notificationId).

USER_MANAGEMENT rows are the seam for jobs: ``AppleNotification.objects.for_event(event_id)``
gives the per-user results Apple pushed for an event, so a running job can finish its items
without waiting for the next Event Status poll.
"""

from __future__ import annotations

from django.db import models

from vpp.models.fields import OutsideCharField


class NotificationType(models.TextChoices):
    TEST = "TEST_NOTIFICATION", "Test"
    USER_ASSOCIATED = "USER_ASSOCIATED", "User associated"
    USER_MANAGEMENT = "USER_MANAGEMENT", "User management"
    ASSET_MANAGEMENT = "ASSET_MANAGEMENT", "Asset management"
    ASSET_COUNT = "ASSET_COUNT", "Asset count"
    OTHER = "OTHER", "Other"


class AppleNotificationQuerySet(models.QuerySet):
    def for_event(self, event_id: str):
        return self.filter(event_id=event_id).order_by("received_at", "id")


class AppleNotification(models.Model):
    notification_id = models.CharField(max_length=100, unique=True)
    notification_type = models.CharField(max_length=40)
    # eventId of USER_MANAGEMENT / ASSET_MANAGEMENT notifications ("" otherwise).
    event_id = OutsideCharField(max_length=100, blank=True, db_index=True)
    # USER_MANAGEMENT: CREATE | UPDATE | RETIRE; ASSET_MANAGEMENT: ASSOCIATE | ...
    event_type = OutsideCharField(max_length=20, blank=True)
    result = OutsideCharField(max_length=10, blank=True)  # SUCCESS | FAILURE
    uid = OutsideCharField("library uId", max_length=100, blank=True)
    # The "notification" object as Apple sent it (holds no secrets: user ids, statuses).
    payload = models.JSONField(default=dict)
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    objects = AppleNotificationQuerySet.as_manager()

    class Meta:
        verbose_name = "Apple notification"
        ordering = ["-received_at", "-id"]

    def __str__(self) -> str:
        return f"{self.notification_type} {self.notification_id}"
