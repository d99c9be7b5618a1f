"""The Invitations card of the VPP Server Setting page: the channel and templates, and "Send test to me".

How the message is built and sent lives in ``vpp/invitations/``; this module stores what the
admin chose and audits it (docs/vpp-setting.md, "Invitations").
"""

from __future__ import annotations

import logging
import smtplib

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import transaction

from vpp.audit import audit_record
from vpp.invitations.email import invitation_send_test, sender_check
from vpp.invitations.message import body_check, template_check
from vpp.models import InvitationChannel, VppServerSetting
from vpp.services import Refused

logger = logging.getLogger(__name__)

NO_ADDRESS_TEXT = "Your admin account has no email address to send the test to."


class InvitationTestNotSent(Refused):
    """ "Send test to me" could not send; ``reason`` is a sentence for the admin."""


def invitation_settings_update(
    *, channel: str, sender: str, subject: str, body_text: str, body_html: str, actor
) -> VppServerSetting:
    """Store the invitation channel and templates; audit ``vpp.invitation_changed``.

    ``channel`` is an ``InvitationChannel`` value ("push", "email" or "both"); ``sender`` a
    From address ("" for the server default); the three templates take the placeholders of
    ``vpp.invitations.message.PLACEHOLDERS``. The audit event names the fields that changed
    (``fields="invitation_subject,invitation_body_text"``), never their text, and is written
    on every save, as the page always did. Raises ``ValueError`` for an unknown channel or a sender that is not
    one address on one line (``vpp.invitations.email.sender_check``), and
    ``vpp.invitations.message.TemplateError`` for a template that would not render or a body
    without ``{invitation_link}``; nothing is stored then.
    """
    if channel not in InvitationChannel.values:
        raise ValueError(f"unknown invitation channel {channel!r}")
    sender = sender_check(sender)
    template_check(subject)
    body_check(body_text)
    body_check(body_html, required=False)
    new = {
        "invitation_channel": channel,
        "invitation_sender": sender,
        "invitation_subject": subject,
        "invitation_body_text": body_text,
        "invitation_body_html": body_html,
    }
    with transaction.atomic():
        setting = VppServerSetting.load_for_update()
        changed = [field for field, value in new.items() if getattr(setting, field) != value]
        for field in changed:
            setattr(setting, field, new[field])
        setting.save(update_fields=[*new, "updated_at"])
        audit_record(actor=actor, action="vpp.invitation_changed", details={"fields": ",".join(changed)})
    return setting


LIFECYCLE_FIELDS = (
    "convert_during_sync",
    "reminders_enabled",
    "reminder_after_days",
    "reminder_max",
    "reminder_escalate",
)


def lifecycle_update(*, data: dict, actor) -> VppServerSetting:
    """Store linking-after-sync and the reminder rule; audit ``vpp.lifecycle_changed`` with ``field="old → new"``.

    ``data`` holds the ``LIFECYCLE_FIELDS``: ``reminder_after_days`` in days (1–90),
    ``reminder_max`` reminders per user (1–10), the others booleans (vpp/services/reminders.py,
    vpp/services/convert.py). Raises ValueError for a value out of range; nothing is stored then.
    Saving the same values records nothing.
    """
    if not 1 <= int(data["reminder_after_days"]) <= 90 or not 1 <= int(data["reminder_max"]) <= 10:
        raise ValueError("reminders: 1–90 days and 1–10 reminders")
    with transaction.atomic():
        setting = VppServerSetting.load_for_update()
        changes = {}
        for field in LIFECYCLE_FIELDS:
            old, new = getattr(setting, field), data[field]
            if old != new:
                changes[field] = f"{old} → {new}"
                setattr(setting, field, new)
        if changes:
            setting.save(update_fields=[*LIFECYCLE_FIELDS, "updated_at"])
            audit_record(actor=actor, action="vpp.lifecycle_changed", details=changes)
    return setting


def invitation_test_send(*, actor) -> EmailMultiAlternatives:
    """Mail ``actor`` (the admin who pressed "Send test to me") the invitation of the saved templates.

    The message is the one a device user of the admin's name would get, with a sample link
    (``vpp.invitations.email.invitation_send_test``). Returns the sent message. Raises
    ``InvitationTestNotSent`` when the admin has no email address or the mail server refuses
    or cannot be reached (also a timeout), or when the saved sender or subject cannot be a
    mail header. Not audited: it changes nothing and reaches only the admin.
    """
    if not getattr(actor, "email", ""):
        raise InvitationTestNotSent(NO_ADDRESS_TEXT)
    try:
        return invitation_send_test(
            setting=VppServerSetting.load(),
            to_email=actor.email,
            user_name=actor.get_full_name() or actor.get_username(),
            # A page: the mail server gets the web request's budget, not EMAIL_TIMEOUT (kmconsole/timeouts.py).
            connection=get_connection(timeout=settings.VPP_INTERACTIVE_BUDGET),
        )
    except (smtplib.SMTPException, OSError) as exc:  # refused, unreachable, timed out
        logger.warning("test invitation to admin %s not sent: %s", actor.pk, exc)
        raise InvitationTestNotSent(f"The test invitation could not be sent: {exc}") from None
    except ValueError as exc:  # BadHeaderError, an invalid address: a sender saved before it was checked
        logger.warning("test invitation to admin %s not built: %s", actor.pk, exc)
        raise InvitationTestNotSent(
            f"The test invitation could not be sent ({exc}). Check the sender and the subject, then save."
        ) from None
