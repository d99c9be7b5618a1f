"""The invitation channel registry: how the job flow asks for a way to reach a device user.

The job flow (vpp/jobs/phases/invite.py) only talks to this module. A channel is anything with
the ``Channel`` shape, registered under a name that matches ``InvitationChannel`` ("email",
"push"); the "both" setting means every registered channel the user can be reached on. The
built-in channels (vpp/invitations/email.py, vpp/invitations/push.py) are registered by
``vpp/invitations/__init__.py``, so importing anything of the package fills the registry.

Sending is at most once per (VPP user, channel, job): see InvitationDelivery.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from vpp.models import InvitationChannel, VppServerSetting


@dataclass(frozen=True)
class Invitation:
    """One message to send. ``user`` is the device user (users.User)."""

    vpp_user_id: int
    user: object
    link: str
    organisation: str


@dataclass(frozen=True)
class DeliveryResult:
    ok: bool
    error: str = ""
    # Failed for a reason that may pass (mail server or APNs busy or down): the job retries it
    # later, with backoff and a capped number of attempts, instead of failing the user.
    transient: bool = False


@runtime_checkable
class Channel(Protocol):
    name: str  # "email" or "push"

    def available(self) -> bool:
        """Whether the channel is configured on this installation (e.g. APNs credentials set)."""

    def can_reach(self, user) -> bool:
        """Whether this user has what the channel needs (an email, a push token)."""

    def send(self, invitations: Sequence[Invitation], *, setting: VppServerSetting) -> list[DeliveryResult]:
        """Send all, one result per invitation in order. Raise only for whole-channel outages."""


_registry: dict[str, Channel] = {}


def register_channel(channel: Channel) -> None:
    _registry[channel.name] = channel


def get_channel(name: str) -> Channel | None:
    return _registry.get(name)


def channels_for(choice: str) -> list[Channel]:
    """The usable channels a setting value means ("both" = email and push): registered and configured."""
    channels = (_registry.get(name) for name in channel_names_for(choice))
    return [channel for channel in channels if channel is not None and channel.available()]


def channel_names_for(choice: str) -> list[str]:
    return ["push", "email"] if choice == InvitationChannel.BOTH else [choice]


def invitation_organisation(setting: VppServerSetting, *, default: str = "Your organisation") -> str:
    """The organisation an invitation comes from: the token's organisation, else its location."""
    return setting.token_org_name or setting.location_name or default
