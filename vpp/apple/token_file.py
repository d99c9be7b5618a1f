"""Content token (``.vpptoken``) files: validation with a reason an admin can act on.

A content token is one Base64 string of JSON ``{"token", "expDate", "orgName"}``, downloaded
from Apple Business Manager or Apple School Manager:
https://developer.apple.com/documentation/devicemanagement/getting-started-with-the-management-api
(notes: docs/apple-vpp.md#token-file).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

logger = logging.getLogger(__name__)


MAX_TOKEN_FILE_BYTES = 16 * 1024  # real tokens are a few hundred bytes; anything huge is the wrong file


class TokenFileError(ValueError):
    """The uploaded content token cannot be used; ``reason`` is a sentence for the admin."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ContentToken:
    raw: str = field(repr=False)  # the Base64 sToken sent as "Bearer <raw>"; never log it
    token: str = field(repr=False)
    org_name: str
    expires_at: datetime  # aware UTC

    @property
    def expired(self) -> bool:
        return self.expires_at <= datetime.now(UTC)


_DOWNLOAD_HINT = (
    "Download a new content token in Apple Business Manager or Apple School Manager"
    " (Preferences › Payments and Billing) and upload it here."
)


def parse_content_token(data: str | bytes, *, now: datetime | None = None, allow_expired: bool = False) -> ContentToken:
    """Validate a .vpptoken file: one Base64 string of JSON {token, expDate, orgName} (docs/apple-vpp.md#token-file).

    Every failure raises TokenFileError with a specific reason. The reason never contains
    the token or the file's content (it is a secret, and reasons end up in logs and pages).
    """
    text = _token_text(data)
    payload = _token_payload(text)
    values = {}
    for name in ("token", "expDate", "orgName"):
        value = payload.get(name)
        if value is None:
            raise TokenFileError(
                f"The content token has no “{name}” field, so it is not a complete VPP content token. {_DOWNLOAD_HINT}"
            )
        if not isinstance(value, str) or not value.strip():
            raise TokenFileError(f"The content token's “{name}” field is empty or not text. {_DOWNLOAD_HINT}")
        values[name] = value.strip()
    expires_at = _token_expiry(values["expDate"])
    org_name = values["orgName"]
    if not allow_expired and expires_at <= (now or datetime.now(UTC)):
        raise TokenFileError(
            f"The content token for “{org_name}” expired on {expires_at:%Y-%m-%d %H:%M} UTC. {_DOWNLOAD_HINT}"
        )
    return ContentToken(raw=text, token=values["token"], org_name=org_name, expires_at=expires_at)


def _token_text(data: str | bytes) -> str:
    if isinstance(data, bytes):
        if len(data) > MAX_TOKEN_FILE_BYTES:
            raise TokenFileError(
                f"The file is too large to be a content token ({len(data)} bytes; a token is under 1 KB). "
                f"{_DOWNLOAD_HINT}"
            )
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise TokenFileError(
                f"The file is binary, not a content token (a .vpptoken file is plain text). {_DOWNLOAD_HINT}"
            ) from None
    elif not isinstance(data, str):
        raise TokenFileError("The content token must be text.")
    if len(data) > MAX_TOKEN_FILE_BYTES:
        raise TokenFileError(f"The file is too large to be a content token. {_DOWNLOAD_HINT}")
    # Strip a byte-order mark and all whitespace (editors add newlines; some wrap Base64).
    text = "".join(data.lstrip("\ufeff").split())
    if not text:
        raise TokenFileError(f"The content token file is empty. {_DOWNLOAD_HINT}")
    return text


def _token_payload(text: str) -> dict:
    try:
        decoded = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise TokenFileError(
            f"The file is not a content token: its content is not Base64 text, or it was cut short. {_DOWNLOAD_HINT}"
        ) from None
    try:
        payload = json.loads(decoded.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise TokenFileError(
            f"The content token is damaged or incomplete: it does not decode to Apple's token data. {_DOWNLOAD_HINT}"
        ) from None
    if not isinstance(payload, dict):
        raise TokenFileError(f"The content token does not contain Apple's token data (wrong format). {_DOWNLOAD_HINT}")
    return payload


def _token_expiry(exp_date: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(exp_date)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        # A date without an offset is ambiguous by hours; a token file always carries one
        # (docs/apple-vpp.md#token-file).
        raise TokenFileError(f"The content token's expiry date ({exp_date[:40]!r}) cannot be read. {_DOWNLOAD_HINT}")
    return parsed.astimezone(UTC)
