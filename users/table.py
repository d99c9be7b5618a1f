"""The Users table's body rows as HTML, built in Python.

Why not a template: the table is the page's hot path. Django's template engine spends about
0.25 ms per row on node dispatch and variable lookups, so 50 rows cost ~12 ms of the page's
50 ms budget at 100,000 users (bench/users_page.py); these f-strings build the same markup in
about a tenth of that. Every value goes through ``escape`` (the same escaping as Django's
autoescape); the surrounding table, its headers and the empty states stay in
templates/users/list.html.

Other apps fill a cell of their own through ``register_cell`` (the vpp app: the VPP status),
with the row values their ``users.selectors.register_row_annotation`` function added.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from html import escape

from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

from kmconsole.templatetags.console import ago, stamp

# slot name -> function(row dict) -> HTML (already escaped). Slots: "vpp_status".
CELL_RENDERERS: dict[str, Callable[[dict], str]] = {}


def register_cell(slot: str, render: Callable[[dict], str]) -> None:
    CELL_RENDERERS[slot] = render


def user_rows_html(rows: list[dict]) -> SafeString:
    """The <tr> elements of one page of the Users table."""
    now = timezone.now()
    vpp_cell = CELL_RENDERERS.get("vpp_status", _no_cell)
    return mark_safe("".join(_row(row, now, vpp_cell) for row in rows))  # noqa: S308 - every value escaped


def _row(row: dict, now: datetime, vpp_cell: Callable[[dict], str]) -> str:
    name = escape(row["display_name"])
    return (
        "<tr>"
        f'<td class="check"><input type="checkbox" class="row-check" name="pk" value="{row["id"]}"'
        f' aria-label="Select {name}"></td>'
        f'<td class="col-name"><span class="cell-main">{name}</span>{_department(row["department"])}</td>'
        f'<td><span class="mono">{escape(row["login_id"])}</span></td>'
        f'<td class="col-email">{_email(row["email"])}{_managed_account(row.get("managed_apple_account", ""))}</td>'
        f'<td class="col-devices">{_devices(row["device_badges"])}</td>'
        f'<td class="col-vpp">{vpp_cell(row)}</td>'
        f'<td class="col-seen">{_last_seen(row["last_seen_at"], now)}</td>'
        "</tr>\n"
    )


def _department(department: str) -> str:
    return f'<span class="cell-sub">{escape(department)}</span>' if department else ""


def _email(email: str) -> str:
    if not email:
        return '<span class="cell-muted">No email</span>'
    email = escape(email)
    return f'<span title="{email}">{email}</span>'


def _managed_account(account: str) -> str:
    if not account:
        return ""
    account = escape(account)
    return f'<span class="cell-sub managed-account" title="Managed Apple Account">Managed: {account}</span>'


def _devices(badges: list[dict]) -> str:
    if not badges:
        return '<span class="cell-muted">No devices</span>'
    spans = "".join(
        f'<span class="badge badge-{badge["tone"]} device-badge" title="{escape(badge["title"])}">'
        f"{escape(badge['label'])}</span>"
        for badge in badges
    )
    return f'<span class="badge-list">{spans}</span>'


def _last_seen(value: datetime | None, now: datetime) -> str:
    if not value:
        return '<span class="cell-muted">Never</span>'
    return f'<span title="{escape(stamp(value))}">{escape(ago(value, now))}</span>'


def _no_cell(row: dict) -> str:
    return '<span class="cell-muted">—</span>'
