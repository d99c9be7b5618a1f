"""Invite read-back: learn Apple's invite codes for a job's users with as few listings as possible.

Apple returns no invite code with a create; the codes come from ``GET /users``. One delta
listing (``sinceVersionId``) carries every user created since that version, whichever chunk
created them, so the job keeps one **watermark** (``Job.apple_version_id``):

- it starts as Apple's versionId read at dispatch, before the job's first create;
- a chunk whose users still lack codes lists ``sinceVersionId=<watermark>``, stores every code
  found for *any* of the job's users, then moves the watermark to that listing's first-page
  versionId (a conditional UPDATE, so a slower chunk never moves it back over a newer one);
- everything Apple had up to a completed listing's versionId is stored for the whole job, so
  that versionId is a safe watermark; an older one only makes the next listing longer.

Only one chunk lists at a time (a job lease, vpp/jobs/leases.py): chunks whose creates
finish together would otherwise list the same users in parallel. The others wait for the
listing and usually find their codes stored; a lease left by a dead worker expires.
"""

from __future__ import annotations

from django.utils import timezone

from vpp.apple.client import VppClient
from vpp.apple.errors import InvalidRequestError
from vpp.apple.types import UserStatus
from vpp.jobs.apple_io import users_listing
from vpp.jobs.leases import READBACK, lease_held
from vpp.jobs.rows import rows_update
from vpp.models import ItemStatus, Job, JobItem, VppUser, VppUserStatus


def has_code(item: JobItem) -> bool:
    return bool(item.vpp_user.invite_code) or item.vpp_user.status == VppUserStatus.ASSOCIATED


# What a read-back (or a USER_ASSOCIATED notification meanwhile) changes on a VppUser.
_REFRESHED = ("invite_code", "status", "apple_email", "id_hash", "last_synced_at")


def refresh_vpp_users(items: list[JobItem]) -> None:
    """Re-read the fields a read-back changes onto the items' VppUsers (tuples, not 500 new models)."""
    rows = VppUser.objects.filter(pk__in=[item.vpp_user_id for item in items]).values_list("pk", *_REFRESHED)
    fresh = {pk: values for pk, *values in rows}
    for item in items:
        values = fresh.get(item.vpp_user_id)
        if values is not None and item.vpp_user is not None:
            for name, value in zip(_REFRESHED, values, strict=True):
                setattr(item.vpp_user, name, value)


def _without_code(items: list[JobItem]) -> list[JobItem]:
    refresh_vpp_users(items)
    return [item for item in items if not has_code(item)]


def _any_without_code(token: str) -> bool:
    """Whether some item of this claim still waits for its code (one cheap query, asked while waiting)."""
    waiting = JobItem.objects.filter(
        claim_token=token, status=ItemStatus.IN_FLIGHT, step="readback", vpp_user__invite_code=""
    ).exclude(vpp_user__status=VppUserStatus.ASSOCIATED)
    return waiting.exists()


def codes_list(*, job: Job, items: list[JobItem], client: VppClient, token: str) -> list[JobItem]:
    """Get the items' codes stored by a delta listing (ours or another chunk's); returns those still without."""
    unknown = _without_code(items)
    if not unknown:
        return []
    # While another chunk lists, wait: its listing usually carries our codes too.
    with lease_held(job, READBACK, token=token, done=lambda: not _any_without_code(token)) as needed:
        if needed and _without_code(unknown):
            _list_since_watermark(job, client)
    return _without_code(unknown)


def _list_since_watermark(job: Job, client: VppClient) -> None:
    """List Apple's changes since the job's watermark, store every code of the job, move the watermark.

    The watermark is read here, before the caller re-reads its users: a chunk that moved it had
    stored its codes first, so they are found either in the database or in this listing.
    """
    watermark = Job.objects.filter(pk=job.pk).values_list("apple_version_id", flat=True).first() or ""
    if not watermark:
        return  # no versionId at all: the caller reads user by user
    try:
        found, version = users_listing(client, since_version_id=watermark)
    except InvalidRequestError:
        return  # 9721 invalid versionId: the caller reads user by user
    store_apple_records(job, found)
    if version and version != watermark:
        Job.objects.filter(pk=job.pk, apple_version_id=watermark).update(apple_version_id=version)


def store_apple_records(job: Job, found: dict) -> None:
    """Copy Apple's records onto this job's users still waiting for their code."""
    if not found:
        return
    now = timezone.now()
    keys = list(found)
    waiting = []
    for start in range(0, len(keys), 500):
        batch = keys[start : start + 500]
        waiting += VppUser.objects.filter(
            status=VppUserStatus.PENDING, invite_code="", job_items__job=job, client_user_id__in=batch
        ).only("pk", "client_user_id", "status", "invite_code", "apple_email", "id_hash")
    changed = []
    for vpp_user in waiting:
        apple = found.get(str(vpp_user.client_user_id).lower())
        if apple is None or not apple.active:
            continue
        vpp_user.apple_email = apple.email or ""
        vpp_user.invite_code = apple.invite_code or ""
        vpp_user.id_hash = apple.id_hash or ""
        vpp_user.last_synced_at = now
        if apple.status == UserStatus.ASSOCIATED:
            vpp_user.status = VppUserStatus.from_apple(apple.status, vpp_user.status)
        changed.append(vpp_user)
    rows_update(changed, ["apple_email", "invite_code", "id_hash", "status", "last_synced_at"])
