"""The VPP status cell of the Users table (rendered in Python: see users/table.py for why).

The row values come from vpp.selectors.users_vpp_row_annotation: ``vpp_status`` (a
VppUserStatus value, None for a user never sent to Apple) and ``vpp_error`` (Apple's last
error message for the user, if any).
"""

from __future__ import annotations

from html import escape

from vpp.models import VppUserStatus

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
    return f'<span class="badge vpp-status {tone}"{title}>{escape(str(_LABELS.get(status, status)))}</span>'
