"""Link Managed Apple Accounts after the scheduled sync (VPP Server Setting › "link during the
scheduled sync"); the bulk action on the Users page uses the same job kind (vpp/jobs/phases/convert.py).

After each scheduled full sync that finished, the next beat tick starts one convert job over
every invited user who has a Managed Apple Account. Claimed with a compare-and-set on
``SyncSchedule.converted_after_job_id``: one convert job per sync, whatever the redeliveries.
"""

from __future__ import annotations

from users.models import User
from users.selectors import UserSelection
from vpp.jobs.engine import job_create
from vpp.jobs.plan import vpp_plan_build
from vpp.models import Job, JobAction, JobStatus, SyncSchedule, VppServerSetting, VppUserStatus
from vpp.selectors import vpp_actions_disabled_reason


def convertible_user_ids() -> list[int]:
    """Active device users invited at Apple (not associated) who have a Managed Apple Account."""
    return list(
        User.objects.filter(is_active=True, vpp_user__status=VppUserStatus.INVITED, vpp_user__unit_uid="")
        .exclude(managed_apple_account="")
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def convert_tick() -> Job | None:
    """The beat tick's part: after a finished scheduled sync, link the convertible users (or None)."""
    setting = VppServerSetting.load()
    if not setting.convert_during_sync or vpp_actions_disabled_reason(setting):  # same rule as the bulk actions
        return None
    schedule = SyncSchedule.load()
    last = schedule.last_job_id
    if last is None or last == schedule.converted_after_job_id:
        return None
    sync_job = Job.objects.filter(pk=last, action=JobAction.SYNC_ALL, status=JobStatus.DONE).first()
    if sync_job is None or sync_job.selection.get("trigger") != "schedule":
        return None
    won = (
        SyncSchedule.objects.filter(pk=1, last_job_id=last)
        .exclude(converted_after_job_id=last)
        .update(converted_after_job_id=last)
    )
    if not won:
        return None
    selection = UserSelection(ids=tuple(convertible_user_ids()))
    plan = vpp_plan_build(action=JobAction.CONVERT, users=selection.users())
    plan.rows = plan.eligible
    if not plan.rows:
        return None
    return job_create(plan=plan, actor=None, selection=selection)
