"""The Invitations card of the VPP Server Setting page: the channel and templates.

How the message is built and sent lives in ``vpp/invitations/``; this module stores what the
admin chose and audits it (docs/vpp-setting.md, "Invitations").
"""

from __future__ import annotations

from django.db import transaction

from vpp.audit import audit_record
from vpp.invitations.message import template_check
from vpp.models import InvitationChannel, VppServerSetting


def invitation_settings_update(
    *, channel: str, sender: str, subject: str, body_text: str, body_html: str, actor
) -> VppServerSetting:
    """Store the invitation channel and templates; audit ``vpp.invitation_changed``.

    ``channel`` is an ``InvitationChannel`` value ("push", "email" or "both"); ``sender`` a
    From address ("" for the server default); the three templates take the placeholders of
    ``vpp.invitations.message.PLACEHOLDERS``. The audit event names the fields that changed
    (``fields="invitation_subject,invitation_body_text"``), never their text, and is written
    on every save, as the page always did. Raises ``ValueError`` for an unknown channel and
    ``vpp.invitations.message.TemplateError`` for a template that would not render; nothing
    is stored then.
    """
    if channel not in InvitationChannel.values:
        raise ValueError(f"unknown invitation channel {channel!r}")
    for template in (subject, body_text, body_html):
        template_check(template)
    new = {
        "invitation_channel": channel,
        "invitation_sender": sender,
        "invitation_subject": subject,
        "invitation_body_text": body_text,
        "invitation_body_html": body_html,
    }
    with transaction.atomic():
        VppServerSetting.load()  # the row exists from here on
        setting = VppServerSetting.objects.select_for_update().get(pk=1)
        changed = [field for field, value in new.items() if getattr(setting, field) != value]
        for field in changed:
            setattr(setting, field, new[field])
        setting.save(update_fields=[*new, "updated_at"])
        audit_record(actor=actor, action="vpp.invitation_changed", details={"fields": ",".join(changed)})
    return setting
