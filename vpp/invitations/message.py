"""Invitation message templates: placeholders, validation, rendering, "send test to me".

Templates use ``{placeholder}`` with exactly the names in PLACEHOLDERS; literal braces
are written ``{{`` and ``}}`` (Python's str.format rules). The jobs part renders real
invitations with ``invitation_render``.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.utils.html import escape

from vpp.invitations.channels import Invitation

PLACEHOLDERS = ("user_name", "invitation_link", "organisation")
SAMPLE = {
    "user_name": "Alex Example",
    "invitation_link": "https://buy.itunes.apple.com/WebObjects/MZFinance.woa/wa/associateVPPUserWithITSAccount"
    "?inviteCode=SAMPLE-INVITE-CODE&mt=8",
    "organisation": "Example Org",
}


class TemplateError(ValueError):
    pass


@dataclass(frozen=True)
class RenderedInvitation:
    subject: str
    text: str
    html: str


def template_check(text: str) -> None:
    """Raise TemplateError naming the problem (unknown placeholder, stray brace, format spec)."""
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise TemplateError(f"Braces do not match ({exc}); write a literal brace as {{{{ or }}}}.") from None
    for _literal, field, spec, conversion in parts:
        if field is None:
            continue
        if field not in PLACEHOLDERS:
            known = ", ".join("{" + name + "}" for name in PLACEHOLDERS)
            shown = "{" + field + "}" if field else "{}"
            raise TemplateError(f"Unknown placeholder {shown}; use {known}.")
        if spec or conversion:
            raise TemplateError(f"Placeholder {{{field}}} takes no format options.")


def _fill(template: str, values: dict[str, str]) -> str:
    return template.format_map(values)


def invitation_render(*, subject: str, body_text: str, body_html: str, values: dict[str, str]) -> RenderedInvitation:
    """Render the three templates; values are HTML-escaped in the HTML body only."""
    html = _fill(body_html, {k: escape(v) for k, v in values.items()}) if body_html.strip() else ""
    # A subject is one line whatever the values hold (no header injection).
    one_line = " ".join(_fill(subject, values).split())
    return RenderedInvitation(subject=one_line, text=_fill(body_text, values), html=html)


def invitation_render_for_setting(setting, *, values: dict[str, str]) -> RenderedInvitation:
    return invitation_render(
        subject=setting.invitation_subject,
        body_text=setting.invitation_body_text,
        body_html=setting.invitation_body_html,
        values=values,
    )


def sample_values(setting) -> dict[str, str]:
    return {**SAMPLE, "organisation": setting.token_org_name or setting.location_name or SAMPLE["organisation"]}


def invitation_send_test(*, setting, to_email: str, user_name: str) -> RenderedInvitation:
    """Mail the rendered templates, with sample values, to the admin who asked."""
    message = invitation_render_for_setting(setting, values={**sample_values(setting), "user_name": user_name})
    mail = EmailMultiAlternatives(
        subject=f"[Test] {message.subject}",
        body=message.text,
        from_email=setting.invitation_sender or settings.DEFAULT_FROM_EMAIL,
        to=[to_email],
    )
    if message.html:
        mail.attach_alternative(message.html, "text/html")
    mail.send()
    return message


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
