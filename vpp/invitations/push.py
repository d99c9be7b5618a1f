"""The push invitation channel: Apple's invitation link as an APNs alert to our agent app.

``PushChannel`` is the channel the registry (vpp/invitations/channels.py) hands to the job flow.

A user is reached on every activated iOS/iPadOS/macOS device that has a push token. A 410
Unregistered answer clears that device's token (the app was removed or notifications were
turned off), so the next invitation does not try it again.

``push_invitation`` sends to one user; ``push_invitations`` sends a batch over one HTTP/2
connection and stops early when APNs itself is unusable (our credentials refused, APNs down),
failing the rest with the same reason instead of hammering it.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.db.models import QuerySet

from users.models import Device, activated_apple_device_q
from vpp.apple.apns import (
    ApnsConfig,
    ApnsError,
    ApnsNotConfiguredError,
    ApnsProvider,
    ApnsRateLimitedError,
    PermanentApnsError,
    PushResult,
    PushStatus,
    TransientApnsError,
)
from vpp.invitations.channels import DeliveryResult, Invitation
from vpp.invitations.message import push_alert
from vpp.models import VppServerSetting

logger = logging.getLogger(__name__)


class DeliveryStatus(enum.StrEnum):
    DELIVERED = "delivered"  # APNs accepted it for at least one device
    NO_DEVICE = "no_device"  # no activated Apple device with a push token
    FAILED = "failed"


@dataclass(frozen=True)
class DeviceOutcome:
    device_id: int
    status: str  # a PushStatus value, or "error"
    message: str = ""


@dataclass(frozen=True)
class PushDeliveryResult:
    """One user's outcome. ``ok``/``error`` match the invitation channel seam's DeliveryResult."""

    status: DeliveryStatus
    error: str = ""  # a sentence for the admin when not delivered
    devices: tuple[DeviceOutcome, ...] = ()
    transient: bool = False  # failed for a reason that may pass (APNs busy or down): retry later

    @property
    def ok(self) -> bool:
        return self.status is DeliveryStatus.DELIVERED

    @property
    def delivered_count(self) -> int:
        return sum(1 for d in self.devices if d.status == PushStatus.SENT)


@dataclass(frozen=True)
class PushMessage:
    user: object  # users.User
    link: str
    title: str
    body: str


NO_DEVICE_TEXT = "No activated iOS/macOS device with the agent app's push token."


def push_devices(user) -> QuerySet[Device]:
    """The devices a push invitation goes to: activated Apple devices with a push token."""
    return Device.objects.filter(activated_apple_device_q(), user=user).exclude(push_token="").order_by("id")


def device_push_token_clear(*, device: Device, token: str) -> bool:
    """Deactivate a token APNs called unregistered; only if the app has not sent a new one since."""
    cleared = Device.objects.filter(pk=device.pk, push_token=token).update(push_token="")
    if cleared:
        logger.info("cleared the push token of device %s (APNs: Unregistered)", device.pk)
    return bool(cleared)


def push_invitation(
    *, user, link: str, title: str, body: str, provider: ApnsProvider | None = None
) -> PushDeliveryResult:
    """Send one user's invitation to each of their push-enabled devices."""
    return push_invitations([PushMessage(user, link, title, body)], provider=provider)[0]


def push_invitations(
    messages: Sequence[PushMessage], *, provider: ApnsProvider | None = None
) -> list[PushDeliveryResult]:
    """One result per message, in order. Never raises for APNs trouble: it becomes the reason."""
    devices = _devices_by_user([m.user for m in messages])
    if not any(devices.values()):
        return [PushDeliveryResult(DeliveryStatus.NO_DEVICE, NO_DEVICE_TEXT) for _ in messages]
    try:
        apns = provider or ApnsProvider.from_settings()
    except ApnsError as exc:  # not configured, or a malformed .p8
        return [_failed_all(devices.get(m.user.pk, []), exc) for m in messages]
    results: list[PushDeliveryResult] = []
    channel_down: ApnsError | None = None
    try:
        for message in messages:
            user_devices = devices.get(message.user.pk, [])
            if not user_devices:
                results.append(PushDeliveryResult(DeliveryStatus.NO_DEVICE, NO_DEVICE_TEXT))
            elif channel_down:
                results.append(_failed_all(user_devices, channel_down))
            else:
                result, channel_down = _send_to_devices(apns, user_devices, message)
                results.append(result)
    finally:
        if provider is None:
            apns.close()
    return results


class PushChannel:
    """Invitations as an APNs alert to the agent app (``push_invitations`` does the sending)."""

    name = "push"

    def available(self) -> bool:
        try:
            ApnsConfig.from_settings()
        except ApnsNotConfiguredError:
            return False
        return True

    def can_reach(self, user) -> bool:
        return push_devices(user).exists()

    def send(self, invitations: Sequence[Invitation], *, setting: VppServerSetting) -> list[DeliveryResult]:
        messages = []
        for invitation in invitations:
            title, body = push_alert(invitation, setting=setting)
            messages.append(PushMessage(user=invitation.user, link=invitation.link, title=title, body=body))
        return [DeliveryResult(result.ok, result.error, result.transient) for result in push_invitations(messages)]


def _devices_by_user(users: Iterable) -> dict[int, list[Device]]:
    by_user: dict[int, list[Device]] = {}
    ids = [u.pk for u in users]
    devices = Device.objects.filter(activated_apple_device_q(), user_id__in=ids).exclude(push_token="")
    for device in devices.order_by("id"):
        by_user.setdefault(device.user_id, []).append(device)
    return by_user


def _send_to_devices(
    apns: ApnsProvider, devices: list[Device], message: PushMessage
) -> tuple[PushDeliveryResult, ApnsError | None]:
    """(the user's result, the error that makes APNs unusable for the rest of the batch, if any)."""
    outcomes: list[DeviceOutcome] = []
    channel_down: ApnsError | None = None
    transient = False
    for device in devices:
        try:
            result = apns.send_invitation(device.push_token, link=message.link, title=message.title, body=message.body)
        except ApnsRateLimitedError as exc:  # 429 concerns this one device: carry on with the others
            outcomes.append(DeviceOutcome(device.pk, "error", exc.message))
            transient = True
            continue
        except (TransientApnsError, PermanentApnsError) as exc:
            outcomes.append(DeviceOutcome(device.pk, "error", exc.message))
            transient = transient or isinstance(exc, TransientApnsError)
            channel_down = exc
            break
        outcomes.append(_outcome(device, result))
    if any(o.status == PushStatus.SENT for o in outcomes):
        return PushDeliveryResult(DeliveryStatus.DELIVERED, devices=tuple(outcomes)), channel_down
    reason = "Push notification not sent: " + " ".join(dict.fromkeys(o.message for o in outcomes if o.message))
    return PushDeliveryResult(DeliveryStatus.FAILED, reason, tuple(outcomes), transient=transient), channel_down


def _outcome(device: Device, result: PushResult) -> DeviceOutcome:
    if result.status is PushStatus.UNREGISTERED:
        device_push_token_clear(device=device, token=result.device_token)
        return DeviceOutcome(device.pk, result.status, result.message + " Its push token was removed.")
    return DeviceOutcome(device.pk, result.status, result.message)


def _failed_all(devices: list[Device], exc: ApnsError) -> PushDeliveryResult:
    if not devices:
        return PushDeliveryResult(DeliveryStatus.NO_DEVICE, NO_DEVICE_TEXT)
    outcomes = tuple(DeviceOutcome(d.pk, "error", exc.message) for d in devices)
    return PushDeliveryResult(
        DeliveryStatus.FAILED,
        f"Push notification not sent: {exc.message}",
        outcomes,
        isinstance(exc, TransientApnsError),
    )
