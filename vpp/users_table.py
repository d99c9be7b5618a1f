"""The VPP status cell of the Users table (rendered in Python: see users/table.py for why).

The row values come from vpp.selectors.users_vpp_row_annotation: ``vpp_status`` (a
VppUserStatus value, None for a user never sent to Apple), ``vpp_error`` (Apple's last
error message for the user, if any) and ``vpp_shared_account`` (another VPP user has the
same Apple Account).
"""

from __future__ import annotations

from html import escape

from vpp.jobs.phases.orphans import BLOCKED_PREFIX
from vpp.models import ACTIVE_VPP_STATUSES, VppUserStatus

_TONES = {
    VppUserStatus.ASSOCIATED: "badge-ok",
    VppUserStatus.INVITED: "badge-info",
    VppUserStatus.PENDING: "badge-warn",
}
_LABELS = {status.value: status.label for status in VppUserStatus}


def vpp_status_cell(row: dict) -> str:
    status = row.get("vpp_status")
    if not status:
        return '<span class="cell-muted">Not a VPP user</span>'
    error = row.get("vpp_error")
    title = f' title="Last Apple error: {escape(error)}"' if error else ""
    tone = _TONES.get(status, "badge-muted")
    cell = f'<span class="badge vpp-status {tone}"{title}>{escape(str(_LABELS.get(status, status)))}</span>'
    if status == VppUserStatus.INVITED and (error or "").startswith(BLOCKED_PREFIX):
        cell += (
            f' <span class="badge badge-warn vpp-blocked" title="{escape(error)}">'
            "Apple Account in use by another VPP user?</span>"
        )
    if row.get("vpp_shared_account") and status in ACTIVE_VPP_STATUSES:
        cell += (
            ' <span class="badge badge-warn vpp-shared-account" title="Another VPP user here is associated with'
            ' the same Apple Account (idHash); Apple lets an Apple Account be associated with one VPP user.">'
            "Shared Apple Account</span>"
        )
    return cell
