"""Reads for VPP users, jobs and the VPP server setting (no writes here)."""

from __future__ import annotations

import datetime as dt
import re

from django.db.models import Count, Exists, F, OuterRef, QuerySet

from users.models import Device, User, activated_apple_device_q
from vpp.content_token import NO_TOKEN_TEXT
from vpp.models import (
    ACTIVE_VPP_STATUSES,
    FINISHED_JOB_STATUSES,
    OPEN_ITEM_STATUSES,
    AssignmentMethod,
    AuditEvent,
    ItemStatus,
    Job,
    JobItem,
    JobStatus,
    SyncOrphan,
    TokenHealth,
    VppServerSetting,
    VppUser,
    VppUserStatus,
)

# The VPP status filter of the Users page (registered in VppConfig.ready()): these values plus
# "none" (not a VPP user).
VPP_STATUS_FILTER_CHOICES = [("none", "Not a VPP user"), *VppUserStatus.choices]


def users_filter_by_vpp_status(queryset: QuerySet, status: str) -> QuerySet:
    """Device users with VPP status ``status`` ("none": never sent to Apple). An unknown value
    does not filter. One LEFT JOIN on the unique vpp_vppuser.user_id."""
    if status == "none":
        return queryset.filter(vpp_user__isnull=True)
    if status in VppUserStatus.values:
        return queryset.filter(vpp_user__status=status)
    return queryset


def users_with_vpp_facts(queryset: QuerySet) -> QuerySet:
    """Device users with what eligibility needs, as plain values (one query, no N+1)."""
    activated = Device.objects.filter(activated_apple_device_q(), user=OuterRef("pk"))
    busy = JobItem.objects.filter(user=OuterRef("pk"), status__in=OPEN_ITEM_STATUSES).exclude(
        job__status__in=FINISHED_JOB_STATUSES
    )
    return queryset.annotate(
        has_apple_device=Exists(activated),
        has_push_token=Exists(activated.exclude(push_token="")),
        in_open_job=Exists(busy),
    ).values(
        "pk",
        "display_name",
        "login_id",
        "email",
        "managed_apple_account",
        "is_active",
        "has_apple_device",
        "has_push_token",
        "in_open_job",
        "vpp_user__pk",
        "vpp_user__status",
        "vpp_user__invite_code",
        "vpp_user__apple_email",
    )


def job_item_counts(job: Job) -> dict[str, int]:
    rows = JobItem.objects.filter(job=job).values("status").annotate(n=Count("id")).order_by()
    counts = dict.fromkeys(ItemStatus.values, 0)
    counts.update({row["status"]: row["n"] for row in rows})
    return counts


def job_items(job: Job, *, status: str | None = None) -> QuerySet:
    items = JobItem.objects.filter(job=job).select_related("vpp_user").order_by("id")
    if status:
        items = items.filter(status=status)
    return items


# The jobs list's status filter: the job statuses, plus finished jobs where some user failed.
JOB_STATUS_FILTER_CHOICES = [*JobStatus.choices, ("with_failures", "Finished with failures")]
SCHEDULE_STARTER = "schedule"


def jobs_filtered(
    *,
    action: str = "",
    status: str = "",
    started_by: str = "",
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> QuerySet:
    """Jobs newest first, filtered: ``action`` a JobAction value, ``status`` a value of
    JOB_STATUS_FILTER_CHOICES, ``started_by`` an admin's username or SCHEDULE_STARTER (no admin),
    ``since``/``until`` instants (created_at in [since, until)). Empty values do not filter."""
    jobs = Job.objects.select_related("started_by").order_by("-created_at", "-id")
    if action:
        jobs = jobs.filter(action=action)
    if status == "with_failures":
        jobs = jobs.filter(status__in=FINISHED_JOB_STATUSES, failed__gt=0)
    elif status:
        jobs = jobs.filter(status=status)
    if started_by == SCHEDULE_STARTER:
        jobs = jobs.filter(started_by__isnull=True)
    elif started_by:
        jobs = jobs.filter(started_by__username=started_by)
    if since:
        jobs = jobs.filter(created_at__gte=since)
    if until:
        jobs = jobs.filter(created_at__lt=until)
    return jobs


def job_starters() -> list[str]:
    """Usernames of the admins who started a job (for the jobs list's filter), sorted."""
    names = Job.objects.filter(started_by__isnull=False).values_list("started_by__username", flat=True)
    return sorted(set(names))


# --- VPP server setting (token health, assignment method) ---------------------------------
# Token states that stop every call to Apple (the admin must act first).
BLOCKING_HEALTH = {
    TokenHealth.MISSING,
    TokenHealth.EXPIRED,
    TokenHealth.REVOKED,
    TokenHealth.INVALID,
    TokenHealth.OTHER_MDM,
}


def vpp_actions_disabled_reason(setting: VppServerSetting | None = None) -> str | None:
    """Why VPP user actions (invite, delete from VPP, sync) are not offered, or None.

    The one rule for the Users page toolbar, the bulk-action endpoints and the settings page:
    show the sentence next to the disabled buttons and refuse server-side with the same one.
    A stored token whose health was not checked yet does not block (the job reports Apple's answer).
    """
    setting = setting or VppServerSetting.load()
    if setting.assignment_method == AssignmentMethod.DEVICE:
        return (
            "Licences are assigned to devices (device-based assignment is chosen in "
            "Setting › iOS/macOS › VPP Server Setting), so VPP user actions are off."
        )
    if not setting.has_token:
        return NO_TOKEN_TEXT
    if setting.token_health in BLOCKING_HEALTH - {TokenHealth.MISSING}:
        return token_problem(setting)
    return None


def token_problem(setting: VppServerSetting) -> str | None:
    """A sentence about a token that blocks Apple calls, or None when the token is usable."""
    health = setting.token_health
    if health == TokenHealth.MISSING:
        return NO_TOKEN_TEXT
    if health == TokenHealth.EXPIRED:
        return "The content token has expired (Apple error 9621); upload a renewed token."
    if health == TokenHealth.REVOKED:
        return "The content token was revoked (Apple error 9625); upload a new token."
    if health == TokenHealth.INVALID:
        return "Apple does not accept the content token; upload a new token."
    if health == TokenHealth.OTHER_MDM:
        who = setting.other_mdm_name or "another MDM"
        return f"The VPP organizational unit is managed by {who}; take it over on the VPP Server Setting page first."
    return None


def request_setting(request) -> VppServerSetting:
    """The VPP server setting, read once per request (the banner and the Users toolbar both show it)."""
    setting = getattr(request, "_vpp_setting", None)
    if setting is None:
        setting = request._vpp_setting = VppServerSetting.load()
    return setting


def token_banner(setting: VppServerSetting) -> dict | None:
    """The console-wide banner (level, text) for a token that needs attention, from the stored state."""
    problem = token_problem(setting)
    if problem and setting.token_health != TokenHealth.MISSING:
        return {"level": "error", "text": problem}
    if setting.token_health == TokenHealth.EXPIRING:
        return {"level": "warning", "text": setting.token_health_detail or "The content token expires soon."}
    return None


def sync_orphans(job_id: int | None, *, limit: int = 25) -> tuple[list, int]:
    """Apple users a sync found that match nobody here: (first ``limit`` rows, total count)."""
    if not job_id:
        return [], 0
    orphans = SyncOrphan.objects.filter(run__job_id=job_id).order_by("id")
    return list(orphans[:limit]), orphans.count()


def orphan_adopt_candidates(orphans: list[SyncOrphan]) -> dict[int, User]:
    """The device user each orphan most likely belongs to: the one active device user without an
    active VPP user whose email is the orphan's (case-insensitive), by orphan id."""
    emails = {o.email.strip().lower() for o in orphans if o.email.strip()}
    if not emails:
        return {}
    matches: dict[str, list[User]] = {}
    for user in User.objects.filter(is_active=True, email__iregex=_any_of(emails)).select_related("vpp_user"):
        vpp_user = getattr(user, "vpp_user", None)
        if vpp_user is None or vpp_user.status not in ACTIVE_VPP_STATUSES:
            matches.setdefault(user.email.strip().lower(), []).append(user)
    found = {}
    for orphan in orphans:
        users = matches.get(orphan.email.strip().lower(), [])
        if len(users) == 1:
            found[orphan.pk] = users[0]
    return found


def _any_of(emails: set[str]) -> str:
    return "^(" + "|".join(re.escape(email) for email in sorted(emails)) + ")$"


def _shared_account():
    """An active VPP user of the current unit other than the row's with the row's idHash."""
    return VppUser.objects.filter(
        id_hash=OuterRef("vpp_user__id_hash"), unit_uid="", status__in=ACTIVE_VPP_STATUSES
    ).exclude(pk=OuterRef("vpp_user__pk"))


def users_vpp_row_annotation(queryset: QuerySet) -> QuerySet:
    """Users page rows: the VPP status column (registered with users.selectors.register_row_annotation).

    ``vpp_shared_account`` is True when another VPP user here has the same ``idHash`` (one Apple
    Account behind several VPP users; Apple: idHash identifies the Apple Account,
    docs/apple-vpp.md#users).
    """
    return queryset.annotate(
        vpp_status=F("vpp_user__status"),
        vpp_error=F("vpp_user__last_error_message"),
        vpp_shared_account=Exists(_shared_account().exclude(id_hash="")),
    )


# The Users page filter "Apple Account" (registered in VppConfig.ready()).
SHARED_ACCOUNT_FILTER_CHOICES = [("shared", "Shared by several VPP users")]


def users_filter_by_shared_account(queryset: QuerySet, value: str) -> QuerySet:
    """Device users whose VPP user's Apple Account (``idHash``) is also another active VPP user's
    here (``value`` "shared"; anything else does not filter)."""
    if value != "shared":
        return queryset
    shared = (
        VppUser.objects.filter(unit_uid="", status__in=ACTIVE_VPP_STATUSES)
        .exclude(id_hash="")
        .values("id_hash")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .values("id_hash")
    )
    return queryset.filter(vpp_user__status__in=ACTIVE_VPP_STATUSES, vpp_user__id_hash__in=shared)


def shared_mailboxes(users: QuerySet, user_ids: set[int]) -> list[tuple[str, list[str]]]:
    """Among the device users of ``users`` whose id is in ``user_ids``, the email addresses two or
    more share (case-insensitive): [(email, ["Ada (ada)", ...])], for the invite confirmation."""
    by_email: dict[str, list[str]] = {}
    rows = users.exclude(email="").values_list("pk", "email", "display_name", "login_id").order_by("pk")
    for pk, email, name, login in rows.iterator(chunk_size=2000):
        if pk in user_ids:
            by_email.setdefault(email.strip().lower(), []).append(f"{name} ({login})")
    return [(email, names) for email, names in sorted(by_email.items()) if len(names) > 1]


def audit_events(
    *, actor: str = "", action: str = "", since: dt.datetime | None = None, until: dt.datetime | None = None
) -> QuerySet:
    """Audit events newest first: ``actor`` an actor_name ("system"/"schedule" for no admin),
    ``action`` an action code, created_at in [since, until). Empty values do not filter."""
    events = AuditEvent.objects.order_by("-created_at", "-id")
    if actor:
        events = events.filter(actor_name=actor)
    if action:
        events = events.filter(action=action)
    if since:
        events = events.filter(created_at__gte=since)
    if until:
        events = events.filter(created_at__lt=until)
    return events


def audit_filter_values() -> tuple[list[str], list[str]]:
    """(actor names, action codes) that occur in the audit log, sorted: the filter's choices."""
    actors = AuditEvent.objects.order_by().values_list("actor_name", flat=True).distinct()
    actions = AuditEvent.objects.order_by().values_list("action", flat=True).distinct()
    return sorted(set(actors)), sorted(set(actions))
