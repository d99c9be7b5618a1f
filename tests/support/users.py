"""The one user factory: device users, their devices and, when asked, their VPP record.

    make_user()                                   "User 00042", login user42, user42@example.com,
                                                  one activated iPhone: eligible for an invitation
    make_user("Ada", email="", active=False)      any User field by keyword (``**fields``)
    make_user(devices=())                         no device
    make_user(platform=Platform.ANDROID, state=ActivationState.PENDING, push_token="ab" * 32)
                                                  the one device, changed
    make_user(devices=[(Platform.MACOS, ActivationState.ACTIVATED, "<push token>"), (Platform.IOS, ...)])
                                                  any devices: (platform, activation state[, push token])
    make_user(vpp_status=VppUserStatus.INVITED, vpp_fields={"invite_code": "abc"})
                                                  with a VppUser (apple_email = the user's email)
    make_user(vpp_status=VppUserStatus.INVITED, at_apple=client)
                                                  ... also created at Apple through this VppClient
    make_users(1000)                              many eligible users in a few INSERTs

Devices are created one by one, so the Device signals refresh the user's summary columns
(has_<platform>, has_activated_apple_device, last_seen_at); the user is read back afterwards.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping

from users.models import ActivationState, Device, Platform, User, user_search_text
from users.services import user_device_summary_refresh
from vpp.apple.types import RequestUser
from vpp.models import VppUser

_seq = itertools.count(1)


def make_user(
    name: str | None = None,
    *,
    login_id: str | None = None,
    email: str | None = None,
    active: bool = True,
    devices: Iterable[tuple] | None = None,
    platform: str = Platform.IOS,
    state: str = ActivationState.ACTIVATED,
    push_token: str = "",
    vpp_status: str | None = None,
    vpp_fields: Mapping | None = None,
    at_apple=None,
    **fields,
) -> User:
    """A device user (see the module docstring).

    ``name`` is the display name; ``email=""`` means none. ``devices`` replaces the one device
    that ``platform``/``state``/``push_token`` describe; ``()`` gives none. ``vpp_status`` adds a
    VppUser (more of its fields in ``vpp_fields``); ``at_apple`` (a VppClient) also creates that
    user at Apple and waits for the event. Other keywords are User fields.
    """
    n = next(_seq)
    if devices is None:
        devices = [(platform, state, push_token)]
    elif (platform, state, push_token) != (Platform.IOS, ActivationState.ACTIVATED, ""):
        raise TypeError("give either devices=[...] or platform/state/push_token, not both")
    login_id = login_id or f"user{n}"
    user = User.objects.create(
        display_name=name or f"User {n:05d}",
        login_id=login_id,
        email=f"{login_id}@example.com" if email is None else email,
        is_active=active,
        **fields,
    )
    devices = list(devices)
    for device in devices:
        platform_, state_, *token = device
        make_device(user, platform=platform_, activation_state=state_, push_token=token[0] if token else "")
    if devices:
        user.refresh_from_db()
    if vpp_status is not None:
        vpp_user = VppUser.objects.create(
            user=user, status=vpp_status, **{"apple_email": user.email, **(vpp_fields or {})}
        )
        if at_apple is not None:
            [event] = at_apple.create_users(
                [RequestUser(client_user_id=str(vpp_user.client_user_id), email=user.email)]
            )
            assert at_apple.wait_for_event(event, poll_interval=0.05).status == "COMPLETE"
    elif vpp_fields or at_apple is not None:
        raise TypeError("vpp_fields and at_apple need a vpp_status")
    return user


def make_device(user: User, *, platform=Platform.IOS, activation_state=ActivationState.ACTIVATED, **fields) -> Device:
    fields.setdefault("serial_number", f"SN{next(_seq):010d}")
    return Device.objects.create(user=user, platform=platform, activation_state=activation_state, **fields)


def make_users(count: int, *, prefix: str = "Bulk") -> list[User]:
    """Many eligible users (activated iPhone, email) in two INSERTs; bulk writes skip the Device
    signals, so the summary columns are refreshed in one go."""
    start = next(_seq)
    for _ in range(count):
        next(_seq)
    users = User.objects.bulk_create(
        [
            User(
                display_name=f"{prefix} {start + i:05d}",
                login_id=f"{prefix.lower()}{start + i}",
                email=f"{prefix.lower()}{start + i}@example.com",
                search_text=user_search_text(f"{prefix} {start + i:05d}", f"{prefix.lower()}{start + i}", ""),
            )
            for i in range(count)
        ]
    )
    Device.objects.bulk_create(
        [
            Device(
                user=user,
                platform=Platform.IOS,
                activation_state=ActivationState.ACTIVATED,
                serial_number=f"SN{user.pk}",
            )
            for user in users
        ]
    )
    user_device_summary_refresh(user_ids=[user.pk for user in users])
    return users
