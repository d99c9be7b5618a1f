"""System checks: a malformed APNs configuration stops start-up instead of failing the first push."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, register

from vpp.apple.apns import ApnsConfig, ApnsKeyError

_APNS_SETTINGS = ("APNS_KEY", "APNS_KEY_ID", "APNS_TEAM_ID", "APNS_TOPIC")


@register()
def check_apns(app_configs=None, **kwargs) -> list[Error]:
    present = [name for name in _APNS_SETTINGS if getattr(settings, name, "")]
    if not present:
        return []  # push channel off: nothing to check
    missing = [name for name in _APNS_SETTINGS if name not in present]
    if missing:
        return [Error(f"APNs is partly configured: {', '.join(missing)} not set.", id="vpp.E102")]
    try:
        ApnsConfig.from_settings().validate()
    except ApnsKeyError as exc:
        return [Error(exc.message, hint="Set APNS_KEY or APNS_KEY_FILE to Apple's .p8 file.", id="vpp.E101")]
    return []
