"""The email invitation channel: Django's email framework, text + HTML, one connection per batch.

"Send test to me" (``invitation_send_test``) is a real invitation email, built by the same
``EmailChannel.build``, with a sample link, to the admin who asked.

The message is written with Django's own email policy (compat32), only faster: see
``_QuickFoldPolicy`` and ``_InvitationEmail``. tests/vpp/test_invitation_email.py checks the
bytes are the same.
"""

from __future__ import annotations

import logging
import smtplib
import uuid
from collections.abc import Sequence
from email.policy import Compat32
from email.utils import getaddresses

from django.core.exceptions import ValidationError
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.validators import validate_email

from vpp.invitations.channels import DeliveryResult, Invitation
from vpp.invitations.message import invitation_render_for, sample_invitation
from vpp.models import VppServerSetting

logger = logging.getLogger(__name__)

# Marks "Send test to me" mail. A header, not a "[Test]" subject: the test shows the real subject.
TEST_HEADER = "X-Kmconsole-Test"


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
        rendered = invitation_render_for(invitation, setting=setting)
        message = _InvitationEmail(
            subject=rendered.subject,
            body=rendered.text,
            from_email=setting.invitation_sender or None,
            to=[invitation.user.email],
        )
        message.attach_alternative(rendered.html, "text/html")
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


def sender_check(value: str) -> str:
    """The invitation sender (From) as stored: ``value`` stripped, "" for the server default.

    One address, optionally with a display name (``IT <it@example.com>``), on one line. Raises
    ValueError with a sentence for the admin otherwise: a line break would smuggle headers into
    every invitation (``\\r\\nBcc: …``), and Django then refuses to send any of them.
    """
    value = value.strip()
    if not value:
        return ""
    if any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise ValueError("The sender must be one line: no line breaks or control characters.")
    addresses = getaddresses([value])
    if len(addresses) != 1 or not addresses[0][1]:
        raise ValueError("Enter one sender address, e.g. IT <it@example.com>.")
    try:
        validate_email(addresses[0][1])
    except ValidationError:
        raise ValueError(f"{addresses[0][1]!r} is not a valid email address.") from None
    return value


def email_error_transient(exc: Exception) -> bool:
    """A 4xx reply or a lost connection may pass; a 5xx refusal or a bad message will not."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(400 <= code < 500 for code, _ in exc.recipients.values())
    if isinstance(exc, smtplib.SMTPResponseException):
        return 400 <= exc.smtp_code < 500
    return isinstance(exc, OSError)  # connection refused, reset or timed out; server disconnected


def invitation_send_test(
    *, setting: VppServerSetting, to_email: str, user_name: str, connection=None
) -> EmailMultiAlternatives:
    """Mail the admin the invitation a device user of that name would get, with a sample link.

    Built by ``EmailChannel.build`` as every real invitation is (same subject, text and HTML
    parts, link made clickable the same way), addressed to ``to_email`` and marked with the
    header TEST_HEADER. ``connection``: a mail connection (e.g. with a web request's timeout),
    else the default one. Raises what the mail backend raises (smtplib.SMTPException, OSError).
    """
    invitation = sample_invitation(setting, user_name=user_name, email=to_email)
    message = EmailChannel().build(invitation, setting=setting)
    message.extra_headers[TEST_HEADER] = "1"
    if connection is not None:
        message.connection = connection
    message.send()
    return message
