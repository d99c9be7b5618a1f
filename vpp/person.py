"""The VPP part of a person's page (``/users/<id>/``, users/person.py).

users/ owns the page and never imports vpp; vpp fills its section through
``users.person.register_person_section`` in ``VppConfig.ready()`` (``person_section`` here),
the way it fills the Users page's VPP cell. The section shows:

- the VPP user: status, ``clientUserId``, the Apple Account's ``idHash`` (with a warning when
  another active VPP user here has the same one: Apple associates an Apple Account with one VPP
  user, docs/apple-vpp.md#users), the Managed Apple Account when the row has one;
- the invitation link for the helpdesk (copied or scanned as a QR code; revealing it is an
  audit event, ``invitation_link_reveal``);
- the licences the person holds at Apple, read live (``person_licences``, loaded by the page
  after it shows, with a short budget);
- the timeline of their VPP history (``person_timeline``);
- the actions for this one user: the bulk confirmation flow with a one-user selection
  (vpp/bulk_views.py, the same permissions).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import segno
from django.db.models import Q
from django.template.loader import render_to_string

from users.models import Device, User
from vpp.apple.errors import VppError
from vpp.audit import audit_record
from vpp.content_token import NoContentToken, vpp_client
from vpp.invitations.helpdesk import HELPDESK
from vpp.models import (
    ACTIVE_VPP_STATUSES,
    AuditEvent,
    InvitationDelivery,
    ItemStatus,
    JobAction,
    JobItem,
    VppUser,
    VppUserStatus,
)
from vpp.secrets import SecretUnreadable

# The person page is interactive: Apple gets a few seconds, one try, no retry loop (the jobs
# own long waits, docs/vpp-jobs.md#retries-and-waits).
LICENCES_TIMEOUT = (3.0, 5.0)  # seconds: connect, read
LICENCES_BUDGET = 8.0  # seconds for the whole listing
LICENCES_MAX = 500  # assignments shown (a person holds a handful)
TIMELINE_MAX = 200
REVEAL_ACTION = "vpp.person.invitation_link_shown"


def person_vpp_users(user: User) -> list[VppUser]:
    """The device user's VPP users: the current one first, then those of former organizational
    units (``former_user``), newest first."""
    rows = VppUser.objects.filter(Q(user=user) | Q(former_user=user)).order_by("-created_at", "-id")
    return sorted(rows, key=lambda row: row.user_id != user.pk)


def shared_account_count(vpp_user: VppUser) -> int:
    """How many other active VPP users of the current unit have this one's ``idHash``."""
    if not vpp_user.id_hash or vpp_user.unit_uid:
        return 0
    return (
        VppUser.objects.filter(id_hash=vpp_user.id_hash, unit_uid="", status__in=ACTIVE_VPP_STATUSES)
        .exclude(pk=vpp_user.pk)
        .count()
    )


# --------------------------------------------------------------------------- timeline
@dataclass(frozen=True)
class TimelineEntry:
    """One line of the timeline: when (UTC), what, details, the job it belongs to, a badge tone."""

    at: dt.datetime
    title: str
    detail: str = ""
    job_id: int | None = None
    tone: str = "muted"  # ok, info, warn, danger, muted


_ITEM_TONES = {ItemStatus.SUCCEEDED: "ok", ItemStatus.FAILED: "danger", ItemStatus.SKIPPED: "muted"}


def _delivery_target(delivery: InvitationDelivery, user: User, push_devices: int) -> str:
    if delivery.channel == "email":
        return f"to {user.email}" if user.email else "by email"
    if delivery.channel == "push":
        return f"to {push_devices} device{'' if push_devices == 1 else 's'} with a push token"
    if delivery.channel == HELPDESK:
        return "for the helpdesk (link and QR code on this page)"
    return f"by {delivery.channel}"


def person_timeline(user: User, vpp_users: list[VppUser]) -> list[TimelineEntry]:
    """The person's VPP history, newest first (at most TIMELINE_MAX entries), from the VPP user
    rows, the invitation deliveries, the job items and the audit events (the jobs' and this
    page's own). Five queries."""
    entries: list[TimelineEntry] = []
    vpp_ids = [row.pk for row in vpp_users]
    for row in vpp_users:
        entries.append(
            TimelineEntry(row.created_at, "VPP user created", f"clientUserId {row.client_user_id}", tone="info")
        )
        if row.last_synced_at:
            entries.append(TimelineEntry(row.last_synced_at, "Synced with Apple", f"status {row.get_status_display()}"))
        if row.status == VppUserStatus.ASSOCIATED:
            when = row.last_synced_at or row.updated_at
            entries.append(TimelineEntry(when, "Invitation accepted: associated with an Apple Account", tone="ok"))
        if row.status == VppUserStatus.RETIRED:
            entries.append(TimelineEntry(row.updated_at, "Retired from VPP"))
        if row.last_error_message or row.last_error_number:
            number = f"Apple error {row.last_error_number}: " if row.last_error_number else ""
            detail = f"{number}{row.last_error_message}"
            entries.append(TimelineEntry(row.updated_at, "Last error", detail, tone="danger"))
    push_devices = Device.objects.filter(user=user).exclude(push_token="").count()
    deliveries = InvitationDelivery.objects.filter(vpp_user_id__in=vpp_ids).select_related("job")
    for delivery in deliveries.order_by("-id")[:TIMELINE_MAX]:
        state = {"sent": "ok", "failed": "danger"}.get(delivery.state, "warn")
        detail = delivery.error or delivery.get_state_display()
        what = "Reminder" if delivery.job.action == JobAction.REMINDERS else "Invitation"
        title = f"{what} {_delivery_target(delivery, user, push_devices)}"
        entries.append(TimelineEntry(delivery.sent_at or delivery.created_at, title, detail, delivery.job_id, state))
    items = (
        JobItem.objects.filter(Q(user=user) | Q(vpp_user_id__in=vpp_ids))
        .select_related("job")
        .order_by("-id")[:TIMELINE_MAX]
    )
    job_ids = set()
    for item in items:
        job_ids.add(item.job_id)
        if item.request_sent_at and item.job.action in (JobAction.INVITE, JobAction.ORPHANS):
            entries.append(TimelineEntry(item.request_sent_at, "Sent to Apple", "", item.job_id, "info"))
        reason = item.reason or (f"Apple error {item.error_number}" if item.error_number else "")
        title = f"{item.job.get_action_display()}: {item.get_status_display().lower()}"
        entries.append(TimelineEntry(item.updated_at, title, reason, item.job_id, _ITEM_TONES.get(item.status, "info")))
    events = AuditEvent.objects.filter(
        (Q(job_id__in=job_ids) & ~Q(action__endswith=".finished"))
        | Q(action__startswith="vpp.person.", target_summary__contains=_person_marker(user.pk))
    ).order_by("-id")[:TIMELINE_MAX]
    for event in events:
        detail = f"by {event.actor_name}" + (f": {event.target_summary}" if event.job_id else "")
        entries.append(TimelineEntry(event.created_at, _event_title(event), detail, event.job_id))
    # Newest first; entries of the same instant in reverse order of writing (accepted after created).
    order = sorted(range(len(entries)), key=lambda i: (entries[i].at, i), reverse=True)
    return [entries[i] for i in order[:TIMELINE_MAX]]


def _event_title(event: AuditEvent) -> str:
    if event.action == REVEAL_ACTION:
        return "Invitation link shown at the helpdesk"
    return "Job started"


# --------------------------------------------------------------------------- licences at Apple
@dataclass(frozen=True)
class Licences:
    """The person's assignments at Apple (``adamId``, ``pricingParam``), or why they could not be read."""

    rows: list[dict]
    problem: str = ""
    truncated: bool = False


def person_licences(vpp_user: VppUser | None) -> Licences:
    """Apple's assignments for the VPP user's ``clientUserId``, read live
    (GET /assignments?clientUserId=…, https://developer.apple.com/documentation/devicemanagement/get_assignments)
    within LICENCES_BUDGET seconds and without retries. Never raises: a missing token, an
    unreachable Apple or an error comes back as ``problem`` (a sentence for the admin)."""
    if vpp_user is None:
        return Licences([], "Not a VPP user: no licences can be assigned to this person at Apple.")
    try:
        client = vpp_client(timeout=LICENCES_TIMEOUT, max_retries=0, retry_budget=LICENCES_BUDGET)
    except NoContentToken as exc:
        return Licences([], exc.message)
    except SecretUnreadable:
        return Licences([], "The stored content token cannot be decrypted; upload it again.")
    rows: list[dict] = []
    try:
        for assignment in client.iter_assignments(client_user_id=str(vpp_user.client_user_id)):
            if len(rows) >= LICENCES_MAX:
                return Licences(rows, truncated=True)
            rows.append({"adam_id": assignment.adam_id, "pricing_param": assignment.pricing_param or ""})
    except VppError as exc:
        return Licences([], f"Apple could not be asked right now ({exc}). Try again in a moment.")
    except OSError as exc:  # a socket error the client did not wrap
        return Licences([], f"Apple could not be reached right now ({exc}). Try again in a moment.")
    return Licences(sorted(rows, key=lambda row: row["adam_id"]))


# --------------------------------------------------------------------------- invitation link
class LinkUnavailable(Exception):
    """No invitation link can be shown; ``str(exc)`` says why, for the admin."""


def invitation_link(vpp_user: VppUser | None) -> str:
    """The person's current invitation link: the latest stored delivery's link for their current
    invite code, else built from Apple's service configuration (docs/apple-vpp.md#invitations).
    Raises LinkUnavailable when there is none to show."""
    if vpp_user is None or vpp_user.status not in (VppUserStatus.INVITED, VppUserStatus.PENDING):
        raise LinkUnavailable("Only an invited VPP user has an invitation link. Send a VPP invitation first.")
    if not vpp_user.invite_code:
        raise LinkUnavailable("Apple has not given this user an invite code yet. Sync VPP, then try again.")
    deliveries = InvitationDelivery.objects.filter(vpp_user=vpp_user, link__contains=vpp_user.invite_code)
    link = deliveries.order_by("-id").values_list("link", flat=True).first()
    if link:
        return link
    try:
        client = vpp_client(timeout=LICENCES_TIMEOUT, max_retries=0, retry_budget=LICENCES_BUDGET)
        return client.service_config().invitation_url(vpp_user.invite_code)
    except (NoContentToken, SecretUnreadable, VppError, OSError) as exc:
        raise LinkUnavailable(f"The invitation link could not be built: {exc}") from exc


def audit_event_person(event: AuditEvent) -> int | None:
    """The device user a person-page audit event is about ("device user #<id> (" in its sentence,
    ``invitation_link_reveal``), or None: the audit log links such an event to the person's page."""
    found = _PERSON_MARKER.search(event.target_summary)
    return int(found.group(1)) if found and event.action.startswith("vpp.person.") else None


# How a person-page audit event names its person (the sentence in vpp.audit.SENTENCES).
_PERSON_MARKER = re.compile(r"device user #(\d+) \(")


def _person_marker(pk: int) -> str:
    return f"device user #{pk} ("


def invitation_link_reveal(*, user: User, actor, ip: str | None) -> dict:
    """Reveal the person's invitation link to ``actor`` (the audit event is written first):
    ``{"link": str, "qr_svg": str}`` (the QR code as inline SVG, segno). Raises LinkUnavailable."""
    vpp_user = VppUser.objects.filter(user=user).first()
    link = invitation_link(vpp_user)
    audit_record(
        actor=actor,
        action=REVEAL_ACTION,
        details={"user": user.pk, "login": user.login_id, "clientUserId": vpp_user.client_user_id},
        count=1,
        outcome="invitation link shown (copy / QR code)",
        ip=ip,
    )
    qr = segno.make(link, error="m")
    svg = qr.svg_inline(scale=4, border=2, dark="#1c2430", light="#ffffff", title="Invitation link as a QR code")
    return {"link": link, "qr_svg": svg}


# --------------------------------------------------------------------------- the section
def person_section(request, user: User) -> str:
    """The VPP section of the person page (registered in VppConfig.ready())."""
    vpp_users = person_vpp_users(user)
    current = vpp_users[0] if vpp_users and vpp_users[0].user_id == user.pk else None
    can_reach = bool(user.email) or Device.objects.filter(user=user).exclude(push_token="").exists()
    context = {
        "person": user,
        "vpp_user": current,
        "former": [row for row in vpp_users if row is not current],
        "shared_count": shared_account_count(current) if current else 0,
        # The Managed Apple Account the VPP user is linked with (set by the linking, when it is one).
        "managed_apple_account": getattr(current, "managed_apple_account", "") if current else "",
        "timeline": person_timeline(user, vpp_users),
        "helpdesk_invite": not can_reach,
        "can_reveal": request.user.has_perm("vpp.invite_vppuser"),
        "link_available": bool(
            current and current.invite_code and current.status in (VppUserStatus.INVITED, VppUserStatus.PENDING)
        ),
    }
    return render_to_string("vpp/person/section.html", context, request=request)
