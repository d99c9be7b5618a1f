"""Reads of the vpp app."""

from __future__ import annotations

from vpp.models import AssignmentMethod, TokenHealth, VppServerSetting

# Token states that stop every call to Apple (the admin must act first).
BLOCKING_HEALTH = {TokenHealth.MISSING, TokenHealth.EXPIRED, TokenHealth.REVOKED, TokenHealth.INVALID,
                   TokenHealth.OTHER_MDM}


def vpp_actions_disabled_reason(setting: VppServerSetting | None = None) -> str | None:
    """Why VPP user actions (invite, delete from VPP, sync) are not offered, or None.

    For the Users page and the bulk-action services: show the sentence next to the disabled
    buttons and refuse the action server-side with the same sentence.
    """
    setting = setting or VppServerSetting.load()
    if setting.assignment_method == AssignmentMethod.DEVICE:
        return ("Licences are assigned to devices (device-based assignment is chosen in "
                "Setting › iOS/macOS › VPP Server Setting), so VPP user actions are off.")
    if setting.token_health in BLOCKING_HEALTH:
        return token_problem(setting)
    return None


def token_problem(setting: VppServerSetting) -> str | None:
    """A sentence about a token that blocks Apple calls, or None when the token is usable."""
    health = setting.token_health
    if health == TokenHealth.MISSING:
        return "No content token is uploaded yet (Setting › iOS/macOS › VPP Server Setting)."
    if health == TokenHealth.EXPIRED:
        return "The content token has expired (Apple error 9621); upload a renewed token."
    if health == TokenHealth.REVOKED:
        return "The content token was revoked (Apple error 9625); upload a new token."
    if health == TokenHealth.INVALID:
        return "Apple does not accept the content token; upload a new token."
    if health == TokenHealth.OTHER_MDM:
        who = setting.other_mdm_name or "another MDM"
        return f"The VPP location is managed by {who}; take it over on the VPP Server Setting page first."
    return None


def token_banner(setting: VppServerSetting) -> dict | None:
    """The console-wide banner (level, text) for a token that needs attention, from the stored state."""
    problem = token_problem(setting)
    if problem and setting.token_health != TokenHealth.MISSING:
        return {"level": "error", "text": problem}
    if setting.token_health == TokenHealth.EXPIRING:
        return {"level": "warning", "text": setting.token_health_detail or "The content token expires soon."}
    return None
