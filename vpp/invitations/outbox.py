"""The file outbox (Django's file-based email backend, the embedded default with no SMTP server):
the sent messages as the console's Setting › Sent messages page shows them.

Django's backend appends each message to ``EMAIL_FILE_PATH/<timestamp>-<id>.log`` followed by a
line of 79 dashes (django/core/mail/backends/filebased.py); one file per connection.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path

from django.conf import settings

from vpp.invitations.email import TEST_HEADER

FILE_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
SEPARATOR = b"\n" + b"-" * 79 + b"\n"


@dataclass(frozen=True)
class SentMessage:
    """One message of the outbox: ``sent_at`` (aware, from its Date header; None if unreadable),
    recipients, subject, sender, the plain-text body, and whether it was "Send test to me"."""

    sent_at: dt.datetime | None
    to: str
    subject: str
    sender: str
    text: str
    test: bool


def outbox_active() -> bool:
    """True when email goes to the file outbox (no SMTP configured)."""
    return settings.EMAIL_BACKEND == FILE_BACKEND


def outbox_messages(*, limit: int = 200, search: str = "") -> list[SentMessage]:
    """The newest ``limit`` messages of the outbox, newest first; ``search`` keeps those whose
    recipients or subject contain it (case-insensitive). [] when the outbox does not exist."""
    folder = Path(settings.EMAIL_FILE_PATH)
    if not folder.is_dir():
        return []
    found: list[SentMessage] = []
    needle = search.lower().strip()
    for path in sorted(folder.glob("*.log"), key=lambda p: (p.stat().st_mtime, p.name), reverse=True):
        for raw in reversed([part for part in path.read_bytes().split(SEPARATOR) if part.strip()]):
            message = _parse(raw)
            if needle and needle not in f"{message.to} {message.subject}".lower():
                continue
            found.append(message)
            if len(found) >= limit:
                return found
    return found


def _parse(raw: bytes) -> SentMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    body = message.get_body(preferencelist=("plain",)) if message.is_multipart() else message
    try:
        text = body.get_content() if body is not None else ""
    except (LookupError, KeyError):
        text = ""
    try:
        sent_at = parsedate_to_datetime(str(message["Date"])) if message["Date"] else None
    except (TypeError, ValueError):
        sent_at = None
    if sent_at is not None and sent_at.tzinfo is None:
        sent_at = sent_at.replace(tzinfo=dt.UTC)  # "-0000": UTC, zone unknown (RFC 5322 section 3.3)
    return SentMessage(
        sent_at=sent_at,
        to=str(message.get("To", "")),
        subject=str(message.get("Subject", "")),
        sender=str(message.get("From", "")),
        text=text,
        test=bool(message.get(TEST_HEADER)),
    )
