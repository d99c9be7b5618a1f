"""Small factories for device users and devices (importable by any test: tests.support.users)."""

from __future__ import annotations

import itertools
from datetime import datetime

from users.models import ActivationState, Device, Platform, User

_seq = itertools.count(1)


def make_user(display_name: str | None = None, *, devices=(), **fields) -> User:
    """A device user; ``devices`` is a list of (platform, activation_state) pairs.

    Devices are created one by one, so the User's device summary columns (has_<platform>,
    has_activated_apple_device, last_seen_at) are refreshed by the Device signals.
    """
    n = next(_seq)
    display_name = display_name or f"User {n:05d}"
    fields.setdefault("login_id", f"{display_name.lower().replace(' ', '.')}.{n}")
    fields.setdefault("email", f"{fields['login_id']}@example.com")
    user = User.objects.create(display_name=display_name, **fields)
    for platform, state in devices:
        make_device(user, platform=platform, activation_state=state)
    if devices:
        user.refresh_from_db()
    return user


def make_device(user: User, *, platform=Platform.IOS, activation_state=ActivationState.ACTIVATED, **fields) -> Device:
    fields.setdefault("serial_number", f"SN{next(_seq):010d}")
    return Device.objects.create(user=user, platform=platform, activation_state=activation_state, **fields)


def activated_ios_user(display_name: str | None = None, **fields) -> User:
    return make_user(display_name, devices=[(Platform.IOS, ActivationState.ACTIVATED)], **fields)


def seen_at(value: str) -> datetime:
    return datetime.fromisoformat(value)
