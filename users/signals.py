"""Keep the device summary on User current when a single Device is saved or deleted.

A signal (not a save() override) because cascade deletes of devices do not call delete()
on each instance. Bulk writes bypass signals: call user_device_summary_refresh() after them.
"""

from __future__ import annotations

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from users.models import Device
from users.services import user_device_summary_refresh


@receiver(post_save, sender=Device, dispatch_uid="users.device_saved")
@receiver(post_delete, sender=Device, dispatch_uid="users.device_deleted")
def _device_changed(sender, instance: Device, **kwargs) -> None:
    if instance.user_id:
        user_device_summary_refresh(user_ids=[instance.user_id])
