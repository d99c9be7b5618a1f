"""Template helpers for the VPP actions on the Users page."""

from __future__ import annotations

from django import template

from vpp.bulk_views import PERMISSIONS, action_blocker
from vpp.models import VppServerSetting
from vpp.selectors import request_setting

register = template.Library()


@register.simple_tag(takes_context=True)
def vpp_actions(context) -> dict:
    """What the toolbar needs: why actions are off (if they are) and which ones this admin may run.

    {"blocker": sentence or "", "needs_token": bool, "allowed": {"invite": bool, "delete": bool,
    "sync": bool}, "denied": [labels of the actions this admin's role does not allow]}.
    """
    request = context.get("request")
    user = getattr(request, "user", None)
    setting = request_setting(request) if request else VppServerSetting.load()
    allowed = {action.value: bool(user and user.has_perm(perm)) for action, perm in PERMISSIONS.items()}
    return {
        "blocker": action_blocker(setting),
        "needs_token": setting.user_based and not setting.has_token,
        "allowed": allowed,
        # Shown as text next to the buttons (a disabled button's tooltip never appears: it gets no
        # pointer events), e.g. "Your role does not allow: Delete from VPP."
        "denied": [action.label for action in PERMISSIONS if not allowed[action.value]],
    }
