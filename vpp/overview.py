"""The VPP overview page's reads: the funnel of device users through VPP, and the Users page
filter each funnel number links to.

One fact, one place: each funnel stage is one condition on the device user's ``VppUser`` row
(``FUNNEL_STAGES``). The overview counts it with one aggregate over ``vpp_vppuser`` and the
Users page filters on the same condition (``users_filter_by_vpp_stage``, registered as the
``vpp_stage`` filter in ``VppConfig.ready()``), so a number and the page it links to agree.

The stages (device users only; a VPP user whose device user is gone or belongs to a former
organizational unit counts nowhere):

- ``eligible``: active, with an activated iOS/iPadOS/macOS device, and not a VPP user (the
  invite's eligibility rule, vpp/jobs/plan.py, before channels);
- ``pending``, ``invited``, ``associated``, ``retired``: the VPP status (docs/apple-vpp.md#user-statuses);
- ``invited_1d`` … ``invited_older``: invited users by the age of their last invitation
  (under a day, 1–7 days, 7–30 days, over 30 days; an invited user without a recorded
  invitation, e.g. found by a sync, counts as over 30 days);
- ``failed``: the user's last VPP action left Apple's (or a channel's) error message on the row
  (the Users page shows it on the status badge); it overlaps the statuses above.

Cost at 100,000 users (bench/overview.py, target p95 < 100 ms for the whole page): one COUNT
per stage, each a range of an index (no table rows read): the status counts walk
vppuser_status_idx, the invited ages vppuser_funnel_age_idx (status, invited_at, user), the
failed ones the partial vppuser_failed_idx, and the eligible users the partial
users.user_eligible_idx probed against the VPP users' unique user_id.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db import connection
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from users.models import User
from vpp.models import VppUser, VppUserStatus

DAY = dt.timedelta(days=1)
# (stage, label, lower bound of the age, upper bound) for the invited age buckets.
INVITED_AGES = (
    ("invited_1d", "under a day", None, DAY),
    ("invited_7d", "1–7 days", DAY, 7 * DAY),
    ("invited_30d", "7–30 days", 7 * DAY, 30 * DAY),
    ("invited_older", "over 30 days", 30 * DAY, None),
)


@dataclass(frozen=True)
class Stage:
    """One funnel number: ``key`` (the ``vpp_status`` or ``vpp_stage`` filter value), its
    ``label``, its bar colour. Its condition is ``stage_vpp_q(key, now)``."""

    key: str
    label: str
    tone: str  # the bar colour class (console.css: .bar-<tone>)


STAGES = (
    Stage("eligible", "Eligible, not a VPP user", "muted"),
    Stage("pending", "Pending at Apple", "warn"),
    Stage("invited", "Invited", "info"),
    *(Stage(key, f"Invited {label} ago", "info") for key, label, _, _ in INVITED_AGES),
    Stage("associated", "Associated", "ok"),
    Stage("retired", "Retired", "muted"),
    Stage("failed", "Last action failed", "danger"),
)
STAGE_LABELS = {stage.key: stage.label for stage in STAGES}
# The Users page filter "VPP stage": the stages the VPP status filter does not already cover.
VPP_STAGE_FILTER_CHOICES = [(stage.key, stage.label) for stage in STAGES if stage.key not in VppUserStatus.values]


# The last VPP action left an error on the row (jobs write Apple's number with a message, the
# full sync a message alone). vppuser_failed_idx is a partial index on exactly this condition.
FAILED_Q = ~Q(last_error_message="")


def stage_vpp_q(key: str, now: dt.datetime) -> Q | None:
    """The condition on ``VppUser`` for stage ``key`` at ``now`` (UTC); None for ``eligible``.
    Raises KeyError for an unknown stage."""
    if key == "failed":
        return FAILED_Q
    if key in VppUserStatus.values:
        return Q(status=key)
    for name, _, low, high in INVITED_AGES:
        if name == key:
            q = Q(status=VppUserStatus.INVITED)
            if high is not None:
                q &= Q(invited_at__gt=now - high)
            if low is not None and high is not None:
                q &= Q(invited_at__lte=now - low)
            elif low is not None:  # the oldest bucket; an invitation never recorded counts here
                q &= Q(invited_at__lte=now - low) | Q(invited_at__isnull=True)
            return q
    if key == "eligible":
        return None
    raise KeyError(key)


def _eligible_users(queryset: QuerySet) -> QuerySet:
    queryset = queryset.filter(is_active=True, has_activated_apple_device=True)
    if connection.vendor == "postgresql":
        # NOT EXISTS: a merge anti join of two index-only scans (the LEFT JOIN … IS NULL form
        # is planned as a hash join of the whole VPP table, ~3x slower at 100,000 users).
        return queryset.filter(~Exists(VppUser.objects.filter(user=OuterRef("pk"))))
    # SQLite: the LEFT JOIN walks user_eligible_idx and probes the unique user_id once per row
    # (NOT EXISTS runs a correlated subquery per row, ~40% slower).
    return queryset.filter(vpp_user__isnull=True)


def users_filter_by_vpp_stage(queryset: QuerySet, key: str, *, now: dt.datetime | None = None) -> QuerySet:
    """Device users in funnel stage ``key`` (the Users page's ``?vpp_stage=``); an unknown key
    does not filter."""
    if key == "eligible":
        return _eligible_users(queryset)
    try:
        q = stage_vpp_q(key, now or timezone.now())
    except KeyError:
        return queryset
    return queryset.filter(vpp_user__in=VppUser.objects.filter(q, user__isnull=False).values("pk"))


@dataclass(frozen=True)
class FunnelRow:
    key: str
    label: str
    tone: str
    count: int
    percent: int  # of the widest bar (0–100), for the chart
    url_params: dict[str, str]  # the Users page query that lists these users
    indent: bool = False  # an invited age bucket (part of "invited")


def funnel(*, now: dt.datetime | None = None) -> list[FunnelRow]:
    """The funnel's numbers now, in ``STAGES`` order: a COUNT per stage over the same condition
    the Users page filters on (the oldest invited bucket by difference), each answered from an
    index (vppuser_status_idx, vppuser_funnel_age_idx, vppuser_failed_idx, user_eligible_idx)."""
    now = now or timezone.now()
    with_user = VppUser.objects.filter(user__isnull=False)
    counted = [stage.key for stage in STAGES if stage.key not in ("eligible", "invited_older")]
    counts = {key: with_user.filter(stage_vpp_q(key, now)).count() for key in counted}
    # The age buckets split the invited users (disjoint, and every invited user is in one), so the
    # oldest is the rest: its own COUNT would walk every invited user (the OR with "never recorded").
    counts["invited_older"] = counts["invited"] - sum(counts[key] for key, *_ in INVITED_AGES[:-1])
    counts["eligible"] = _eligible_users(User.objects.all()).count()
    widest = max(counts.values()) or 1
    rows = []
    for stage in STAGES:
        key = "vpp_status" if stage.key in VppUserStatus.values else "vpp_stage"
        rows.append(
            FunnelRow(
                key=stage.key,
                label=stage.label,
                tone=stage.tone,
                count=counts[stage.key],
                percent=round(100 * counts[stage.key] / widest),
                url_params={key: stage.key},
                indent=stage.key.startswith("invited_"),
            )
        )
    return rows
