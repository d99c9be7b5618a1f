"""The console-wide token banner: read from the stored health state (no Apple call per page);
whether the Setting menu offers "Sent messages" (the file outbox is in use)."""

from django.utils.functional import SimpleLazyObject

from vpp import selectors
from vpp.invitations.outbox import outbox_active
from vpp.services import alerts


def token_banner(request):
    def banner():
        return selectors.token_banner(selectors.request_setting(request))

    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}

    # Lazy: pages that do not render the banner (fragments) pay nothing.
    def alert_banner():
        # For the admins who can act on them; a token problem the token banner shows is not repeated.
        if not user.has_perm(alerts.SETTINGS_PERMISSION):
            return []
        setting = selectors.request_setting(request)
        token_banner_shown = selectors.token_banner(setting) is not None
        return [
            alert.text for alert in alerts.alerts_active(setting) if alert.kind != "token" or not token_banner_shown
        ]

    return {
        "vpp_token_banner": SimpleLazyObject(banner),
        "vpp_alert_banner": SimpleLazyObject(alert_banner),
        "console_outbox": outbox_active(),
    }
