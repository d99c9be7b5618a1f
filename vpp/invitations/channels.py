"""Invitation channels: how an invitation link reaches a device user.

The job flow (vpp/jobs/phases/invite.py) only talks to this module. A channel is anything with
the ``Channel`` shape, registered under a name that matches ``InvitationChannel`` ("email",
"push"); the "both" setting means every registered channel the user can be reached on.
Email is built in; the APNs push channel plugs in from vpp/apple/apns.py::

    from vpp.invitations.channels import register_channel
    register_channel(ApnsChannel())

Sending is at most once per (VPP user, channel, job): see InvitationDelivery.
"""

from __future__ import annotations

import logging
import smtplib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from email.policy import Compat32
from typing import Protocol, runtime_checkable

from django.core.mail import EmailMultiAlternatives, get_connection
from django.utils.html import escape, linebreaks

from vpp.models import InvitationChannel, VppServerSetting

logger = logging.getLogger(__name__)


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


def deliver_invitation(*, vpp_user, link: str, channel: str) -> DeliveryResult:
    """Send one invitation now over one channel (no idempotency bookkeeping; jobs use the batch path)."""
    impl = get_channel(channel)
    if impl is None:
        return DeliveryResult(False, f"The {channel} channel is not configured.")
    setting = VppServerSetting.load()
    invitation = Invitation(vpp_user.pk, vpp_user.user, link, setting.token_org_name or "Your organisation")
    return impl.send([invitation], setting=setting)[0]


class _SafeDict(dict):
    def __missing__(self, key):  # unknown {placeholders} in admin-edited templates stay as typed
        return "{" + key + "}"


def render_template(template: str, invitation: Invitation, *, html: bool = False) -> str:
    user = invitation.user
    values = {
        "user_name": getattr(user, "display_name", ""),
        "email": getattr(user, "email", ""),
        "organisation": invitation.organisation,
        "invitation_link": invitation.link,
    }
    if html:
        values = {key: escape(value) for key, value in values.items()}
    return template.format_map(_SafeDict(values))


class _QuickFoldPolicy(Compat32):
    """Django's email policy (compat32), minus the cost of folding headers that need no folding.

    compat32 runs every header through email.header.Header to fold it (~30 µs each, a dozen
    per invitation: a fifth of the cost of sending one). A one-line ASCII value that fits in
    max_line_length comes out of that unchanged, so it is written as is.
    """

    def _fold(self, name, value, sanitize):
        if (
            isinstance(value, str)
            and value.isascii()
            and "\r" not in value
            and "\n" not in value
            and len(name) + 2 + len(value) <= (self.max_line_length or 0)
        ):
            return f"{name}: {value}{self.linesep}"
        return super()._fold(name, value, sanitize)


_QUICK_FOLD = _QuickFoldPolicy()


class _InvitationEmail(EmailMultiAlternatives):
    """Text + HTML with its MIME boundary chosen up front, written with _QuickFoldPolicy.

    Without a boundary, the stdlib generator picks a random one and compiles a fresh regex for
    every message to check it is absent from the body (~0.5 ms each, a third of the cost of an
    invitation). A uuid4 boundary needs no such check.
    """

    def _create_alternatives(self, msg):
        msg = super()._create_alternatives(msg)
        if msg.is_multipart() and not msg.get_boundary():
            msg.set_boundary(f"=_kmconsole_{uuid.uuid4().hex}")
        return msg

    def message(self):
        msg = super().message()
        msg.policy = _QUICK_FOLD  # the generator writes the parts with the top-level message's policy
        return msg


class EmailChannel:
    """Invitations through Django's email framework: text + HTML, one connection per batch."""

    name = "email"

    def available(self) -> bool:
        return True  # Django's email backend is always configured (SMTP, or the file outbox)

    def can_reach(self, user) -> bool:
        return bool(getattr(user, "email", ""))

    def build(self, invitation: Invitation, *, setting: VppServerSetting) -> EmailMultiAlternatives:
        subject = render_template(setting.invitation_subject, invitation).replace("\n", " ")
        text = render_template(setting.invitation_body_text, invitation)
        if setting.invitation_body_html:
            html = render_template(setting.invitation_body_html, invitation, html=True)
        else:
            html = linebreaks(escape(text)).replace(
                escape(invitation.link), f'<a href="{escape(invitation.link)}">{escape(invitation.link)}</a>'
            )
        message = _InvitationEmail(
            subject=subject,
            body=text,
            from_email=setting.invitation_sender or None,
            to=[invitation.user.email],
        )
        message.attach_alternative(html, "text/html")
        return message

    def send(self, invitations: Sequence[Invitation], *, setting: VppServerSetting) -> list[DeliveryResult]:
        try:
            connection = get_connection(fail_silently=False)
            connection.open()
        except Exception as exc:  # noqa: BLE001 - the mail server is unreachable: nobody gets one now
            logger.warning("invitation emails not sent, no connection to the mail server: %s", exc)
            return [DeliveryResult(False, f"Email could not be sent: {exc}", transient=True) for _ in invitations]
        results = []
        try:
            for invitation in invitations:
                try:
                    connection.send_messages([self.build(invitation, setting=setting)])
                    results.append(DeliveryResult(True))
                except Exception as exc:  # noqa: BLE001 - one refused recipient must not stop the batch
                    logger.warning("invitation email to vpp user %s failed: %s", invitation.vpp_user_id, exc)
                    results.append(DeliveryResult(False, f"Email could not be sent: {exc}", email_error_transient(exc)))
        finally:
            connection.close()
        return results


def email_error_transient(exc: Exception) -> bool:
    """A 4xx reply or a lost connection may pass; a 5xx refusal or a bad message will not."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(400 <= code < 500 for code, _ in exc.recipients.values())
    if isinstance(exc, smtplib.SMTPResponseException):
        return 400 <= exc.smtp_code < 500
    return isinstance(exc, OSError)  # connection refused, reset or timed out; server disconnected


class PushChannel:
    """Invitations as an APNs alert to the agent app (vpp/invitations/push.py does the sending)."""

    name = "push"
    body = "Tap to join and receive apps and books from {organisation}."

    def available(self) -> bool:
        from vpp.apple.apns import ApnsConfig, ApnsNotConfiguredError

        try:
            ApnsConfig.from_settings()
        except ApnsNotConfiguredError:
            return False
        return True

    def can_reach(self, user) -> bool:
        from vpp.invitations.push import push_devices

        return push_devices(user).exists()

    def send(self, invitations: Sequence[Invitation], *, setting: VppServerSetting) -> list[DeliveryResult]:
        from vpp.invitations.push import PushMessage, push_invitations

        messages = [
            PushMessage(
                user=invitation.user,
                link=invitation.link,
                title=render_template(setting.invitation_subject, invitation).replace("\n", " "),
                body=self.body.format(organisation=invitation.organisation),
            )
            for invitation in invitations
        ]
        return [DeliveryResult(result.ok, result.error, result.transient) for result in push_invitations(messages)]


register_channel(EmailChannel())
register_channel(PushChannel())
