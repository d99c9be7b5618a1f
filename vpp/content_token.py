"""The stored content token: the one way to build a VPP client from it, the one "no token"
signal, and the one writer of the token's health.

Every part that calls Apple (the jobs, the settings page, the daily health check) builds its
client with ``vpp_client`` and, when Apple says the token is broken, records that with
``token_health_record_error``: one wording per Apple error, one place that writes it.
Apple's token errors (9621 expired, 9625 revoked, 9601/9622/9722 not accepted):
https://developer.apple.com/documentation/devicemanagement/handling-error-responses
(the project's notes: docs/apple-vpp.md#token-file, #errors).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from vpp import secrets as vault
from vpp.apple.client import VppClient
from vpp.apple.errors import (
    RETRIED_LATER,
    OtherManagerError,
    RateLimiterUnavailableError,
    TokenExpiredError,
    TokenInvalidError,
    TokenRevokedError,
    TransientVppError,
    VppError,
)
from vpp.apple.types import ClientConfig, MdmInfo
from vpp.models import TokenHealth, VppServerSetting
from vpp.signals import vpp_event_after_commit

# The one sentence for "no token", wherever it stops something (jobs, the toolbar, Sync now, the schedule).
NO_TOKEN_TEXT = "No content token is uploaded yet. Upload a content token in Setting › iOS/macOS › VPP Server Setting."


class NoContentToken(RuntimeError):
    """No content token is stored, so nothing can be asked of Apple. ``str(exc)`` is for the admin."""

    def __init__(self, message: str = NO_TOKEN_TEXT):
        super().__init__(message)
        self.message = message


def vpp_client(
    setting: VppServerSetting | None = None,
    *,
    raw_token: str | None = None,
    watch_manager: bool = True,
    interactive: bool = False,
    **kwargs,
) -> VppClient:
    """A ``VppClient`` for the stored content token (or ``raw_token``, a token being uploaded).

    The base URL is the setting's override (the sandbox), else ``settings.VPP_API_BASE_URL``.
    ``interactive=True`` (a web request) gives the client ``settings.VPP_INTERACTIVE_BUDGET``
    seconds for everything it does, with no sleeping through Retry-After (kmconsole/timeouts.py);
    the background jobs keep the client's long budget. ``kwargs`` go to ``VppClient`` (a rate
    limiter in tests). Raises ``NoContentToken`` when no token is stored, and
    ``vpp.secrets.SecretUnreadable`` when it cannot be decrypted.

    For the stored token the client watches Apple's ``mdmInfo`` (``watch_manager``): an
    answer naming another manager stops it before its next request (``OtherManagerError``),
    and a unit already recorded as managed by another MDM sends nothing at all. The setting
    page's own token steps (upload, claim, takeover, health check) read ``mdmInfo`` themselves
    and pass ``watch_manager=False``. Source: docs/apple-vpp.md#mdminfo.
    """
    setting = setting or VppServerSetting.load()
    if raw_token is None:
        if not setting.has_token:
            raise NoContentToken()
        raw_token = vault.decrypt(setting.content_token_encrypted)
        if watch_manager:
            kwargs.setdefault("manager_id", str(setting.mdm_id))
            if setting.token_health == TokenHealth.OTHER_MDM:
                kwargs.setdefault("other_manager", MdmInfo(id="", name=setting.other_mdm_name or "another MDM"))
    if interactive:
        kwargs.setdefault("budget", settings.VPP_INTERACTIVE_BUDGET)
    return VppClient(raw_token, base_url=setting.api_base_url or settings.VPP_API_BASE_URL, **kwargs)


def not_now_text(exc: TransientVppError, *, now: dt.datetime | None = None) -> str:
    """Why a web request could not get an answer from Apple now, and when to try again, for the admin.

    "Apple is busy (HTTP 503); try again after 14:05 UTC." when Apple sent Retry-After (or our
    limiter holds requests back for it), "Redis (…) is unreachable …" when our own
    infrastructure failed, else Apple's failure and a few minutes. Nothing was changed in
    each case (the callers check this before storing anything).
    """
    now = now or timezone.now()
    # The catalogue's "will be retried later" is the jobs' promise; a page retries nothing.
    happened = exc.message.replace(RETRIED_LATER, "").strip()
    if isinstance(exc, RateLimiterUnavailableError):
        return f"{happened} Nothing was changed; try again once Redis is back."
    if exc.retry_after:
        # Round up to the next minute: "after 14:05" must not be too early.
        at = now + dt.timedelta(seconds=exc.retry_after + 59)
        status = f" (HTTP {exc.http_status})" if exc.http_status else ""
        return f"Apple is busy{status}; try again after {at:%H:%M} UTC. Nothing was changed."
    return f"{happened} Nothing was changed; try again in a few minutes."


@dataclass(frozen=True)
class TokenCheck:
    """A token health and the sentence shown with it (empty when all is well).

    ``not_checked``: why Apple could not be asked this time (empty when it was); ``health`` and
    ``detail`` are then the last recorded ones, unchanged."""

    health: str
    detail: str
    config: ClientConfig | None = None
    other_mdm_name: str = ""  # with health "other_mdm": the manager Apple named
    not_checked: str = ""


def health_from_error(exc: VppError) -> TokenCheck | None:
    """The token state an Apple error reports, or None for errors that say nothing about the token."""
    if isinstance(exc, TokenExpiredError):
        return TokenCheck(TokenHealth.EXPIRED, f"Apple reports the token expired (error {exc.error_number}).")
    if isinstance(exc, TokenRevokedError):
        return TokenCheck(
            TokenHealth.REVOKED,
            f"Apple reports the token revoked (error {exc.error_number}). "
            "Download a new one in Apple Business/School Manager.",
        )
    if isinstance(exc, OtherManagerError):
        return TokenCheck(TokenHealth.OTHER_MDM, exc.message, other_mdm_name=exc.manager_name)
    if isinstance(exc, TokenInvalidError):
        number = f" (error {exc.error_number})" if exc.error_number is not None else ""
        return TokenCheck(TokenHealth.INVALID, f"Apple does not accept this token{number}.")
    return None


def token_health_store(
    *, check: TokenCheck, now: dt.datetime | None = None, setting: VppServerSetting | None = None
) -> None:
    """Record ``check`` as the stored token's health (the banner and the actions read it).

    With ``setting`` (a row the caller changed, e.g. after an upload or a check at Apple) the
    health is set on it and the row saved with the caller's changes; without, one UPDATE.
    """
    now = now or timezone.now()
    previous = (setting or VppServerSetting.load()).token_health  # the row exists from here on
    if previous != check.health:
        vpp_event_after_commit(
            "token.health_changed", {"health": check.health, "previous": previous, "detail": check.detail[:500]}
        )
    if setting is not None:
        setting.token_health, setting.token_health_detail = check.health, check.detail[:500]
        setting.token_health_checked_at = now
        setting.save()
        return
    named = {"other_mdm_name": check.other_mdm_name[:200]} if check.other_mdm_name else {}
    VppServerSetting.objects.filter(pk=1).update(
        token_health=check.health, token_health_detail=check.detail[:500], token_health_checked_at=now, **named
    )


def token_health_record_error(exc: VppError, *, now: dt.datetime | None = None) -> TokenCheck | None:
    """If ``exc`` says the token is expired, revoked or not accepted, record it; returns the check or None."""
    check = health_from_error(exc)
    if check is not None:
        token_health_store(check=check, now=now)
    return check
