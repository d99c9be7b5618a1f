"""Invitation reminders: who is due, and the round the beat tick starts.

The rule (VPP Server Setting › Reminders; off by default): a user invited ``reminder_after_days``
days ago (``VppUser.invited_at``, moved by every invitation and reminder) who has not accepted gets
the invitation again, at most ``reminder_max`` times (``VppUser.reminders_sent``, back to 0 when
an admin invites again). A round is one job on the engine (audited, in the jobs list, per-user
results); vpp/jobs/phases/reminders.py sends it.

Once per round: the tick claims a round with a compare-and-set on
``VppServerSetting.reminders_last_round_at`` (at most one per ``ROUND_SECONDS``), so a second
beat or a redelivered tick starts nothing; inside a round, deliveries are unique per user,
channel and job.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.db.models import Q
from django.utils import timezone

from users.models import User
from users.selectors import UserSelection
from vpp.jobs.engine import job_create
from vpp.jobs.plan import vpp_plan_build
from vpp.models import Job, JobAction, VppServerSetting, VppUserStatus
from vpp.selectors import vpp_actions_disabled_reason

logger = logging.getLogger(__name__)

# At most one round per hour: reminders count in days, and a user a round could not reach is
# not tried again every minute.
ROUND_SECONDS = 3600


def reminders_due(setting: VppServerSetting, *, now: dt.datetime) -> list[int]:
    """Device user ids due a reminder now (invited ≥ N days ago, not associated, fewer than M reminders)."""
    cutoff = now - dt.timedelta(days=setting.reminder_after_days)
    return list(
        User.objects.filter(
            is_active=True,
            vpp_user__status=VppUserStatus.INVITED,
            vpp_user__unit_uid="",
            vpp_user__invited_at__lte=cutoff,
            vpp_user__reminders_sent__lt=setting.reminder_max,
        )
        .exclude(vpp_user__invite_code="")
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def reminders_tick(*, now: dt.datetime | None = None) -> Job | None:
    """The beat tick's reminders part: start this round's job if reminders are on and users are due.

    Returns the job started, or None (off, token blocked, not yet time, nobody due, or another
    tick claimed the round).
    """
    now = now or timezone.now()
    setting = VppServerSetting.load()
    if not setting.reminders_enabled or not setting.reminder_max or vpp_actions_disabled_reason(setting):
        return None
    due = reminders_due(setting, now=now)
    if not due:
        return None
    since = now - dt.timedelta(seconds=ROUND_SECONDS)
    won = (
        VppServerSetting.objects.filter(pk=1, reminders_enabled=True)
        .filter(Q(reminders_last_round_at__isnull=True) | Q(reminders_last_round_at__lte=since))
        .update(reminders_last_round_at=now)
    )
    if not won:
        return None
    selection = UserSelection(ids=tuple(due))
    plan = vpp_plan_build(action=JobAction.REMINDERS, users=selection.users(), channel=setting.invitation_channel)
    plan.rows = plan.eligible  # a user no channel reaches is not listed every round
    if not plan.rows:
        return None
    job = job_create(plan=plan, actor=None, selection=UserSelection(ids=tuple(r.user_id for r in plan.rows)))
    logger.info("reminders round: job %s for %d users", job.pk, len(plan.rows))
    return job
