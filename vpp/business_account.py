"""The stored Apple Business API account: the one way to build a ``BusinessClient`` from it, the
one "not configured" signal, and the one writer of its health (shown like the content token's).
Apple's API accounts: https://support.apple.com/guide/business/axm33189f66a (docs/apple-business.md).
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.utils import timezone

from vpp import secrets as vault
from vpp.apple.business import BusinessAuthError, BusinessClient, BusinessNotPermittedError
from vpp.apple.errors import VppError
from vpp.models import AppleBusinessSetting, TokenHealth

NOT_CONFIGURED_TEXT = "No Apple Business API account is set up yet. Add one in Setting › Apple Business."


class BusinessNotConfigured(RuntimeError):
    """No API account (client id, key id, private key) is stored. ``message`` is for the admin."""

    def __init__(self, message: str = NOT_CONFIGURED_TEXT):
        super().__init__(message)
        self.message = message


def business_client(setting: AppleBusinessSetting | None = None, *, private_key: str | None = None, **kwargs):
    """A ``BusinessClient`` for the stored account (or ``private_key``, a key being uploaded,
    with the setting's ids). Base and token URLs: the setting's overrides (the sandbox), else
    settings.APPLE_BUSINESS_API_URL / _TOKEN_URL. ``kwargs`` go to ``BusinessClient``. Raises
    ``BusinessNotConfigured``, ``vpp.secrets.SecretUnreadable`` or ``BusinessKeyError``."""
    setting = setting or AppleBusinessSetting.load()
    if private_key is None:
        if not setting.configured:
            raise BusinessNotConfigured()
        private_key = vault.decrypt(setting.private_key_encrypted)
    kwargs.setdefault("requests_per_minute", settings.APPLE_BUSINESS_REQUESTS_PER_MINUTE)
    return BusinessClient(
        client_id=setting.client_id,
        key_id=setting.key_id,
        private_key=private_key,
        base_url=setting.api_base_url or settings.APPLE_BUSINESS_API_URL,
        token_url=setting.token_url or settings.APPLE_BUSINESS_TOKEN_URL,
        **kwargs,
    )


def business_health_from_error(exc: VppError) -> tuple[str, str] | None:
    """(health, sentence) for an error that says the account is broken; None for other errors."""
    if isinstance(exc, BusinessAuthError):
        return TokenHealth.INVALID, exc.message
    if isinstance(exc, BusinessNotPermittedError):
        return TokenHealth.INVALID, exc.message
    return None


def business_health_store(*, health: str, detail: str = "", now: dt.datetime | None = None, **fields) -> None:
    """Record the account's health (and any other fields given) with one UPDATE."""
    AppleBusinessSetting.load()
    AppleBusinessSetting.objects.filter(pk=1).update(
        health=health, health_detail=detail[:500], checked_at=now or timezone.now(), **fields
    )


def business_health_record_error(exc: VppError) -> bool:
    """If ``exc`` says the account is refused, record it (True); else nothing (False)."""
    found = business_health_from_error(exc)
    if found is None:
        return False
    business_health_store(health=found[0], detail=found[1])
    return True
