"""Acting on orphans: Apple users a full sync found that match no device user here (typically left
by a previous MDM). From the sync's result page an admin retires them at Apple (licences revoked
first) or adopts one as the VPP user of a device user; either runs as one job of kind
``orphans`` on the job engine (vpp/jobs/phases/orphans.py), confirmed first and audited.

An orphan still Associated with a person's Apple Account blocks that person's invitation: Apple
lets one Apple Account be associated with one VPP user of the organizational unit, so the
person accepts and stays "Invited" (docs/apple-vpp.md#orphans).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from django.db import transaction

from users.models import User
from vpp.jobs.engine import job_enqueue
from vpp.models import (
    ACTIVE_VPP_STATUSES,
    AuditEvent,
    ItemStatus,
    Job,
    JobAction,
    JobItem,
    SyncOrphan,
    VppUser,
    VppUserStatus,
)
from vpp.services import Refused

# An orphan's row that cannot be acted on, and why (shown on the confirmation, per orphan).
NOT_UUID = "Its clientUserId is not a UUID (another tool's format); act on it in that tool."
KNOWN_HERE = "It is known here already (a VPP user has this clientUserId); run a full sync again."
NOT_ACTIVE = "Apple listed it as {status}: there is nothing to retire or adopt."
NO_SUCH_USER = "The chosen device user does not exist."
INACTIVE_USER = "The chosen device user is deactivated."
HAS_VPP_USER = "The chosen device user already has a VPP user ({status}); delete it from VPP first."
CHOSEN_TWICE = "The same device user is chosen for two orphans."


class OrphansRefused(Refused):
    """Nothing can be done with the orphans chosen; ``reason`` is a sentence for the admin."""


@dataclass
class OrphanRow:
    """One chosen orphan: ``adopt_by`` is the device user it becomes the VPP user of (None: retire)."""

    orphan: SyncOrphan
    adopt_by: User | None = None
    problem: str = ""

    @property
    def label(self) -> str:
        email = f" ({self.orphan.email})" if self.orphan.email else ""
        return f"Apple user {self.orphan.client_user_id}{email}"


@dataclass
class OrphanPlan:
    """What an orphans job will do: the rows it acts on and the ones it cannot (with a problem)."""

    rows: list[OrphanRow] = field(default_factory=list)

    @property
    def retire(self) -> list[OrphanRow]:
        return [row for row in self.rows if not row.problem and row.adopt_by is None]

    @property
    def adopt(self) -> list[OrphanRow]:
        return [row for row in self.rows if not row.problem and row.adopt_by is not None]

    @property
    def refused(self) -> list[OrphanRow]:
        return [row for row in self.rows if row.problem]


def orphan_plan_build(*, run_job_id: int, orphan_ids: list[int], adopt: dict[int, int]) -> OrphanPlan:
    """The plan for the orphans of the full sync job ``run_job_id`` the admin ticked.

    ``orphan_ids``: SyncOrphan ids; ``adopt``: {orphan id: device user id} for those to adopt
    (the others are retired). Orphans of another sync are ignored. Raises ``OrphansRefused``
    when none is chosen.
    """
    orphans = list(SyncOrphan.objects.filter(run__job_id=run_job_id, pk__in=orphan_ids).order_by("id"))
    if not orphans:
        raise OrphansRefused("Tick at least one orphan Apple user.")
    users = User.objects.filter(pk__in=set(adopt.values())).select_related("vpp_user").in_bulk()
    known = {
        str(c)
        for c in VppUser.objects.filter(client_user_id__in=_uuids(orphans)).values_list("client_user_id", flat=True)
    }
    plan, chosen = OrphanPlan(), set()
    for orphan in orphans:
        row = OrphanRow(orphan=orphan)
        user_id = adopt.get(orphan.pk)
        if user_id is not None:
            row.adopt_by = users.get(user_id)
        row.problem = _problem(row, user_id, known, chosen)
        if row.adopt_by is not None:
            chosen.add(row.adopt_by.pk)
        plan.rows.append(row)
    return plan


def _problem(row: OrphanRow, user_id: int | None, known: set[str], chosen: set[int]) -> str:
    orphan = row.orphan
    if _uuid(orphan.client_user_id) is None:
        return NOT_UUID
    if str(_uuid(orphan.client_user_id)) in known:
        return KNOWN_HERE
    if VppUserStatus.from_apple(orphan.apple_status, "") not in (VppUserStatus.INVITED, VppUserStatus.ASSOCIATED):
        return NOT_ACTIVE.format(status=orphan.apple_status or "unknown")
    if user_id is None:
        return ""
    user = row.adopt_by
    if user is None:
        return NO_SUCH_USER
    if not user.is_active:
        return INACTIVE_USER
    vpp_user = getattr(user, "vpp_user", None)
    if vpp_user is not None and vpp_user.status in ACTIVE_VPP_STATUSES:
        return HAS_VPP_USER.format(status=vpp_user.get_status_display().lower())
    if user.pk in chosen:
        return CHOSEN_TWICE
    return ""


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def _uuids(orphans: list[SyncOrphan]) -> list[uuid.UUID]:
    return [u for u in (_uuid(o.client_user_id) for o in orphans) if u is not None]


def orphans_act(*, plan: OrphanPlan, run_job_id: int, actor, ip: str | None = None) -> Job:
    """Make the orphans job (retire and adopt items), audit it, enqueue it after commit.

    Each orphan to retire gets a VppUser here without a device user (its clientUserId and what
    Apple said of it), which the retire phase revokes and retires. Raises ``OrphansRefused``
    when the plan has nothing to act on (nothing is written then).
    """
    if not plan.retire and not plan.adopt:
        raise OrphansRefused("None of the chosen orphans can be acted on: " + _problems(plan))
    with transaction.atomic():
        job = Job.objects.create(
            action=JobAction.ORPHANS,
            started_by=actor if getattr(actor, "pk", None) else None,
            selection={
                "orphans_of_job": run_job_id,
                "retire": [row.orphan.client_user_id for row in plan.retire],
                "adopt": {row.orphan.client_user_id: row.adopt_by.pk for row in plan.adopt},
            },
            total=len(plan.retire) + len(plan.adopt),
        )
        items = [_retire_item(job, row) for row in plan.retire]
        items += [
            JobItem(
                job=job,
                user=row.adopt_by,
                user_label=f"{row.adopt_by.display_name} ({row.adopt_by.login_id}) ← {row.label}"[:300],
                step="adopt",
                apple_client_user_id=str(_uuid(row.orphan.client_user_id)),
            )
            for row in plan.adopt
        ]
        JobItem.objects.bulk_create(items)
        AuditEvent.objects.create(
            actor=job.started_by,
            actor_name=getattr(actor, "username", "") or "system",
            action="vpp.orphans",
            target_summary=orphans_sentence(plan)[:500],
            count=job.total,
            outcome=f"Job #{job.pk} queued: {len(plan.retire)} to retire, {len(plan.adopt)} to adopt.",
            ip=ip,
            job=job,
        )
        transaction.on_commit(lambda: job_enqueue(job_id=job.pk))
    return job


def _retire_item(job: Job, row: OrphanRow) -> JobItem:
    orphan = row.orphan
    vpp_user = VppUser.objects.create(
        user=None,
        client_user_id=_uuid(orphan.client_user_id),
        status=VppUserStatus.from_apple(orphan.apple_status, VppUserStatus.INVITED),
        apple_email=orphan.email[:254],
        id_hash=orphan.id_hash[:200],
    )
    return JobItem(
        job=job, vpp_user=vpp_user, user_label=row.label[:300], step="orphan_retire", status=ItemStatus.PENDING
    )


def orphans_sentence(plan: OrphanPlan) -> str:
    """The audit sentence: "Retire 2 orphan Apple users at Apple; adopt 1 (… as VPP user of Ada (ada))"."""
    parts = []
    if plan.retire:
        parts.append(f"Retire {len(plan.retire)} orphan Apple user{'s' if len(plan.retire) != 1 else ''} at Apple")
    if plan.adopt:
        adopted = ", ".join(
            f"{row.orphan.client_user_id} as VPP user of {row.adopt_by.display_name} ({row.adopt_by.login_id})"
            for row in plan.adopt
        )
        parts.append(f"adopt {len(plan.adopt)} ({adopted})")
    return "; ".join(parts)


def _problems(plan: OrphanPlan) -> str:
    return " ".join(f"{row.label}: {row.problem}" for row in plan.refused)
