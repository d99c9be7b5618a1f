"""The console-wide token banner: read from the stored health state (no Apple call per page);
whether the Setting menu offers "Sent messages" (the file outbox is in use)."""

from django.utils.functional import SimpleLazyObject

from vpp import selectors
from vpp.invitations.outbox import outbox_active


def token_banner(request):
    def banner():
        return selectors.token_banner(selectors.request_setting(request))

    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    # Lazy: pages that do not render the banner (fragments) pay nothing.
    return {"vpp_token_banner": SimpleLazyObject(banner), "console_outbox": outbox_active()}
