"""Orphan Apple users (found by a full sync, matching nobody here), acted on from the sync's result page.

- **Retire** (step ``orphan_retire``): the orphan got a VppUser here without a device user when
  the job was made (vpp/services/orphans.py), so the Delete from VPP phase runs on it as it is:
  licences revoked, then retired at Apple (``delete.delete_phase``).
- **Adopt** (step ``adopt``): the orphan's clientUserId becomes the VppUser of a chosen device
  user. Apple is asked first (``GET /users?clientUserId=``): a user Apple no longer has as
  active is not adopted. Nothing is written to Apple; the next full sync sends the device
  user's email if it differs (``full_sync._push_emails``).

Apple's users and their clientUserId: https://developer.apple.com/documentation/devicemanagement/get-users-4mwln
(docs/apple-vpp.md#orphans).
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from vpp.apple.client import VppClient
from vpp.jobs.items import item_fail, item_succeed
from vpp.models import ACTIVE_VPP_STATUSES, Job, JobItem, SyncOrphan, SyncRun, VppUser, VppUserStatus

GONE = "Apple no longer has this user as active (retired or deleted since the sync); nothing was adopted."
TAKEN = "{name} has a VPP user here already (status {status}); delete it from VPP first, then adopt."
KNOWN = "This Apple user is known here already (clientUserId in use); nothing was adopted."


def adopt_phase(*, job: Job, items: list[JobItem], client: VppClient, token: str) -> None:
    """Adopt each item's orphan (``item.apple_client_user_id``) as the VppUser of ``item.user``."""
    for item in items:
        if item.user is None:
            item_fail([item], "The device user was deleted; nothing was adopted.")
            continue
        apple_user = client.get_user(item.apple_client_user_id)
        if apple_user is None:
            item_fail([item], GONE)
            continue
        reason = _adopt(item, apple_user)
        if reason:
            item_fail([item], reason)
        else:
            status = VppUserStatus(item.vpp_user.status).label.lower()
            item_succeed([item], f"Adopted: now the VPP user of {item.user.display_name} ({status} at Apple).")


def _adopt(item: JobItem, apple_user) -> str:
    """Link the Apple user to the device user in one transaction; a sentence when it cannot be."""
    with transaction.atomic():
        if VppUser.objects.filter(client_user_id=item.apple_client_user_id).exists():
            return KNOWN
        current = VppUser.objects.select_for_update().filter(user=item.user).first()
        if current is not None and current.status in ACTIVE_VPP_STATUSES:
            return TAKEN.format(name=item.user.display_name, status=current.get_status_display().lower())
        if current is not None:  # a retired record stays as history
            VppUser.objects.filter(pk=current.pk).update(user=None, former_user=item.user)
        status = VppUserStatus.from_apple(apple_user.status, VppUserStatus.INVITED)
        item.vpp_user = VppUser.objects.create(
            user=item.user,
            client_user_id=item.apple_client_user_id,
            status=status,
            apple_email=(apple_user.email or "")[:254],
            invite_code=(apple_user.invite_code or "")[:100] if status == VppUserStatus.INVITED else "",
            id_hash=(apple_user.id_hash or "")[:200],
            last_synced_at=timezone.now(),
        )
        JobItem.objects.filter(pk=item.pk).update(vpp_user=item.vpp_user)
    return ""


BATCH = 500


def _label(row: VppUser) -> str:
    user = row.user
    return f"{user.display_name} ({user.login_id})" if user else f"VPP user {row.client_user_id}"


BLOCKED_PREFIX = "Still invited:"
BLOCKED_REASON = (
    BLOCKED_PREFIX + " another VPP user of this organizational unit with the email {email} is associated with an Apple "
    "Account ({who}). Apple lets an Apple Account be associated with one VPP user, so if this person accepts with that "
    "account the invitation stays open. Retire or adopt that user (the full sync's result page), then invite again."
)


def flag_blocked_invitations(run: SyncRun | None = None) -> int:
    """Give invited users a reason when their acceptance is probably blocked: an Associated VPP
    user with the same email exists (an orphan of ``run``, by default the latest full sync's, or
    another VPP user here). Apple does not report the blocked acceptance (the user simply stays
    Registered), so the email is the link (docs/apple-vpp.md#orphans). Stale reasons are
    cleared. Returns how many are flagged.
    """
    run = run or SyncRun.objects.order_by("-pk").first()
    associated: dict[str, str] = {}
    for orphan in SyncOrphan.objects.filter(run=run, apple_status="Associated").exclude(email=""):
        associated.setdefault(orphan.email.strip().lower(), f"Apple user {orphan.client_user_id}, an orphan")
    here = VppUser.objects.filter(unit_uid="", status=VppUserStatus.ASSOCIATED).select_related("user")
    for row in here.iterator(chunk_size=BATCH):
        for email in {row.apple_email, row.user.email if row.user else ""} - {""}:
            associated.setdefault(email.strip().lower(), _label(row))
    flagged = []
    invited = VppUser.objects.filter(unit_uid="", status=VppUserStatus.INVITED).select_related("user")
    for row in invited.iterator(chunk_size=BATCH):
        email = (row.user.email if row.user and row.user.email else row.apple_email).strip().lower()
        if email and email in associated:
            row.last_error_message = BLOCKED_REASON.format(email=email, who=associated[email])[:500]
            flagged.append(row)
    VppUser.objects.bulk_update(flagged, ["last_error_message"], batch_size=BATCH)
    VppUser.objects.filter(last_error_message__startswith=BLOCKED_PREFIX).exclude(
        pk__in=[row.pk for row in flagged]
    ).update(last_error_message="")
    return len(flagged)
