"""The registry the engine reads: every job kind, its phases in order, and what runs each phase.

A **phase** is run by ``run(job=, items=, client=, token=)`` on the items of one chunk that the
engine has claimed for it (``steps``: the item steps it takes). A phase with no steps is a
**job-level** phase: the engine claims the phase as a whole (no per-user items exist before it
runs) and calls ``run`` with ``items=[]``. ``single_task`` phases run once for all chunks (they
read Apple's listing once); ``time_limit`` (seconds) overrides the task's default for a phase
that may run long. ``prepare(job=, client=)`` runs before the phase's first chunks are queued.

A **job kind** lists its phases; ``on_finish(job)`` replaces the engine's generic "finished"
audit event with the kind's own record (the full sync's result on the setting page).
``client`` builds what its phases get as ``client`` (None: the VPP client of the content token,
and the job starts with the content token's mdmInfo check); the directory sync gets an Apple
Business client instead.

Add a job kind by writing its phase module(s) here and one ``JobKind`` entry below. How the
engine runs them: docs/vpp-jobs.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vpp.business_account import business_client
from vpp.jobs.phases import convert, delete, directory, full_sync, invite, orphans, reminders, sync
from vpp.models import Job, JobAction


@dataclass(frozen=True)
class Phase:
    """One step of a job kind (see the module docstring for the fields)."""

    name: str
    run: Callable[..., None]
    label: str  # what the admin reads while the phase runs ("reading Apple's users")
    steps: tuple[str, ...] = ()
    single_task: bool = False
    time_limit: int | None = None
    prepare: Callable[..., None] | None = None

    @property
    def job_level(self) -> bool:
        return not self.steps


@dataclass(frozen=True)
class JobKind:
    """A kind of job (one ``JobAction``): its phases in order and an optional finish hook."""

    action: str
    phases: tuple[Phase, ...]
    on_finish: Callable[[Job], None] | None = None
    client: Callable[[], Any] | None = None

    def index(self, phase: str) -> int:
        """The position of phase ``phase`` (raises ValueError for a phase of another kind)."""
        return [p.name for p in self.phases].index(phase)


# An invite chunk carries its users through create → read back → deliver in one task, so
# email for early chunks overlaps Apple's rate-limited calls for later ones.
INVITE = Phase(
    "invite",
    invite.invite_phase,
    "inviting",
    steps=(*invite.CREATE_STEPS, "readback", "deliver"),
    prepare=invite.invite_prepare,
)
DELETE = Phase("delete", delete.delete_phase, "revoking licences and retiring", steps=("delete",))
SYNC_UPDATE = Phase("update", sync.sync_update_phase, "sending changed emails to Apple", steps=("update",))
SYNC_READ = Phase("read", sync.sync_read_phase, "reading Apple's records", steps=("read",), single_task=True)
# The full sync: job-level phases; reading a large organisation's users takes minutes.
FULL_PUSH = Phase("push", full_sync.full_sync_push_phase, "sending changed emails to Apple", time_limit=1800)
FULL_RETIRE = Phase("retire", full_sync.full_sync_retire_phase, "retiring departed users", time_limit=1800)
FULL_READ = Phase("read_all", full_sync.full_sync_read_phase, "reading Apple's users", time_limit=1800)

# Orphans (Apple users a full sync found matching nobody here): retire them the way Delete from
# VPP does (their VppUser is made with the job), or adopt one as a device user's VPP user.
ORPHAN_RETIRE = Phase("orphan_retire", delete.delete_phase, "revoking licences and retiring", steps=("orphan_retire",))
ORPHAN_ADOPT = Phase("adopt", orphans.adopt_phase, "adopting", steps=("adopt",))

# Convert: invited users who gained a Managed Apple Account, linked by users/update (no second
# create), then read back (linked only when Apple shows them Associated).
CONVERT_LINK = Phase("link", convert.convert_link_phase, "linking Managed Apple Accounts", steps=("link",))
CONVERT_READ = Phase(
    "link_read", convert.convert_read_phase, "reading the linked users back", steps=("link_read",), single_task=True
)
# A reminders round: the invitation again, on the round's channel for each user.
REMIND = Phase("remind", reminders.remind_phase, "sending reminders", steps=("remind",))
# People and devices from Apple Business: one job-level phase each, then the deactivated people's
# follow-up (a VPP full sync retires them at Apple: vpp/services/business.py).
DIRECTORY_PEOPLE = Phase("people", directory.people_phase, "reading people from Apple Business", time_limit=3600)
DIRECTORY_DEVICES = Phase("devices", directory.devices_phase, "reading devices from Apple Business", time_limit=3600)

KINDS: dict[str, JobKind] = {
    JobAction.INVITE: JobKind(JobAction.INVITE, (INVITE,)),
    JobAction.DELETE: JobKind(JobAction.DELETE, (DELETE,)),
    JobAction.SYNC: JobKind(JobAction.SYNC, (SYNC_UPDATE, SYNC_READ)),
    JobAction.ORPHANS: JobKind(JobAction.ORPHANS, (ORPHAN_RETIRE, ORPHAN_ADOPT)),
    JobAction.CONVERT: JobKind(JobAction.CONVERT, (CONVERT_LINK, CONVERT_READ)),
    JobAction.REMINDERS: JobKind(JobAction.REMINDERS, (REMIND,)),
    JobAction.SYNC_ALL: JobKind(
        JobAction.SYNC_ALL, (FULL_PUSH, FULL_RETIRE, FULL_READ), on_finish=full_sync.full_sync_finished
    ),
    JobAction.DIRECTORY: JobKind(
        JobAction.DIRECTORY,
        (DIRECTORY_PEOPLE, DIRECTORY_DEVICES),
        on_finish=directory.directory_finished,
        client=business_client,
    ),
}
PHASES: dict[str, Phase] = {phase.name: phase for kind in KINDS.values() for phase in kind.phases}


def phase_label(name: str) -> str:
    """What the admin reads for phase ``name`` ("" for none or an unknown phase)."""
    phase = PHASES.get(name)
    return phase.label if phase else ""


def kind_for(action: str) -> JobKind:
    """The registered kind of ``action`` (raises KeyError for an unknown action)."""
    return KINDS[action]
