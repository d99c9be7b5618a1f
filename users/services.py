"""Writes for device users."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Exists, Max, OuterRef, Subquery

from users.models import PLATFORM_FLAGS, Device, User, activated_apple_device_q


def user_device_summary_refresh(*, user_ids: Iterable[int] | None = None) -> int:
    """Recompute the device summary columns of users (all users when ``user_ids`` is None).

    User.last_seen_at, has_activated_apple_device and has_<platform> mirror the devices so the
    Users page can filter, sort and count with indexes. Device save/delete keep them current
    through signals (users/signals.py); code that writes devices in bulk (bulk_create,
    QuerySet.update/delete) must call this afterwards. One UPDATE statement; returns rows.
    """
    users = User.objects.all() if user_ids is None else User.objects.filter(pk__in=list(user_ids))
    devices = Device.objects.filter(user=OuterRef("pk")).order_by()
    last_seen = devices.values("user").annotate(latest=Max("last_seen_at")).values("latest")
    return users.update(
        last_seen_at=Subquery(last_seen[:1]),
        has_activated_apple_device=Exists(devices.filter(activated_apple_device_q())),
        **{flag: Exists(devices.filter(platform=platform)) for platform, flag in PLATFORM_FLAGS.items()},
    )
