"""The invitation message: its placeholders, the templates' check, and the one renderer.

Everything that sends or shows an invitation's words renders them here: the email's subject,
text and HTML parts (vpp/invitations/email.py), the push alert's title and body
(vpp/invitations/push.py), and the settings page's preview (with ``sample_values``).
"Send test to me" is a real invitation email built from ``sample_invitation``.

Templates use ``{placeholder}`` with exactly the names in PLACEHOLDERS; literal braces are
written ``{{`` and ``}}`` (Python's str.format rules). The settings form refuses anything else
(``template_check``); a stored template that slipped past it still renders, its unknown
placeholders left as typed.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass

from django.utils.html import escape, linebreaks

from vpp.invitations.channels import Invitation, invitation_organisation

PLACEHOLDERS = ("user_name", "invitation_link", "organisation")
PUSH_BODY = "Tap to join and receive apps and books from {organisation}."

# What the preview and "Send test to me" fill in where a real invitation has the user's own.
SAMPLE_USER_NAME = "Alex Example"
SAMPLE_LINK = (
    "https://buy.itunes.apple.com/WebObjects/MZFinance.woa/wa/associateVPPUserWithITSAccount"
    "?inviteCode=SAMPLE-INVITE-CODE&mt=8"
)
SAMPLE_ORGANISATION = "Example Org"  # only while the setting names no organisation (no token yet)


class TemplateError(ValueError):
    pass


@dataclass(frozen=True)
class RenderedInvitation:
    subject: str  # one line
    text: str
    # The HTML template rendered, or without one the text as HTML with the link made clickable:
    # every invitation email carries an HTML part.
    html: str


@dataclass(frozen=True)
class Recipient:
    """Who a sample invitation is for: the ``user`` of an Invitation needs no more than this."""

    display_name: str
    email: str = ""


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


LINK_PLACEHOLDER = "invitation_link"


def body_check(text: str, *, required: bool = True) -> None:
    """``template_check``, and the body must carry ``{invitation_link}``: an invitation without
    Apple's link invites to nothing. An optional body (``required=False``, the HTML one) may be
    blank. Raises TemplateError."""
    template_check(text)
    if not text.strip() and not required:
        return
    fields = {field for _literal, field, _spec, _conv in string.Formatter().parse(text)}
    if LINK_PLACEHOLDER not in fields:
        raise TemplateError(f"The body must contain {{{LINK_PLACEHOLDER}}}: it is the link the user opens to join.")


class _AsTyped(dict):
    def __missing__(self, key):  # an unknown {placeholder} in a stored template stays as typed
        return "{" + key + "}"


def _fill(template: str, values: Mapping[str, str]) -> str:
    return template.format_map(_AsTyped(values))


def invitation_values(invitation: Invitation) -> dict[str, str]:
    """The placeholders' values for one invitation."""
    return {
        "user_name": getattr(invitation.user, "display_name", ""),
        "invitation_link": invitation.link,
        "organisation": invitation.organisation,
    }


def subject_render(template: str, values: Mapping[str, str]) -> str:
    """The subject (or push title): one line whatever the values hold, so no header injection."""
    return " ".join(_fill(template, values).splitlines())


def invitation_render(*, subject: str, body_text: str, body_html: str, values: Mapping[str, str]) -> RenderedInvitation:
    """Render the three templates; values are HTML-escaped in the HTML body only.

    The settings page's preview calls this with the unsaved form's templates; everything else
    goes through ``invitation_render_for``.
    """
    text = _fill(body_text, values)
    if body_html.strip():
        html = _fill(body_html, {key: escape(value) for key, value in values.items()})
    else:
        link = escape(values["invitation_link"])
        html = linebreaks(escape(text)).replace(link, f'<a href="{link}">{link}</a>')
    return RenderedInvitation(subject=subject_render(subject, values), text=text, html=html)


def invitation_render_for(invitation: Invitation, *, setting) -> RenderedInvitation:
    """One invitation's subject, text and HTML, from the setting's templates."""
    return invitation_render(
        subject=setting.invitation_subject,
        body_text=setting.invitation_body_text,
        body_html=setting.invitation_body_html,
        values=invitation_values(invitation),
    )


def push_alert(invitation: Invitation, *, setting) -> tuple[str, str]:
    """The push alert's (title, body): the title is the email subject."""
    values = invitation_values(invitation)
    return subject_render(setting.invitation_subject, values), _fill(PUSH_BODY, values)


def sample_invitation(setting, *, user_name: str = SAMPLE_USER_NAME, email: str = "") -> Invitation:
    """An invitation with a sample link, from the setting's organisation (what preview and test show)."""
    organisation = invitation_organisation(setting, default=SAMPLE_ORGANISATION)
    return Invitation(0, Recipient(user_name, email), SAMPLE_LINK, organisation)


def sample_values(setting) -> dict[str, str]:
    return invitation_values(sample_invitation(setting))
