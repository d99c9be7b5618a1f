"""Sync VPP for a selection: push changed emails to Apple, then read each user's state back."""

from __future__ import annotations

from django.utils import timezone

from vpp.apple.client import VppClient
from vpp.apple.types import RequestUser, VppApiUser
from vpp.jobs.apple_io import (
    PER_USER_READ_LIMIT,
    batches,
    events_wait,
    failures_by_user,
    prefer,
    send_without_refused,
    users_listing,
)
from vpp.jobs.items import item_fail, item_move, item_succeed
from vpp.jobs.phases.orphans import flag_blocked_invitations
from vpp.jobs.rows import rows_update
from vpp.models import Job, JobItem, VppUserStatus

EMAIL_SENT = "New email sent to Apple."


def sync_update_phase(*, job: Job, items: list[JobItem], client: VppClient, token: str) -> None:
    """users/update for active users whose email changed here since Apple last saw it."""
    config = client.service_config()
    changed = [
        item
        for item in items
        if item.vpp_user
        and item.user
        and item.user.email
        and item.user.email != item.vpp_user.apple_email
        and item.vpp_user.status in (VppUserStatus.INVITED, VppUserStatus.ASSOCIATED)
    ]
    events: dict[str, list[JobItem]] = {}
    failed_pks = set()
    for batch in batches(changed, config.max_users):
        by_cuid = {str(item.vpp_user.client_user_id): item for item in batch}
        users = {cuid: RequestUser(cuid, email=item.user.email) for cuid, item in by_cuid.items()}

        def refused(failures: dict[str, tuple[int | None, str]], by_cuid=by_cuid) -> None:
            for cuid, (number, reason) in failures.items():
                failed_pks.add(by_cuid[cuid].pk)
                item_fail([by_cuid[cuid]], f"Email update refused: {reason}", number)

        event_ids, sent = send_without_refused(
            lambda cuids, users=users: client.update_users([users[cuid] for cuid in cuids]), list(by_cuid), refused
        )
        for event_id in event_ids:
            events.setdefault(event_id, []).extend(by_cuid[cuid] for cuid in sent)
    finished, _ = events_wait(job=job, token=token, client=client, event_ids=events)
    for event_id, status in finished.items():
        per_user, general = failures_by_user(status)
        for item in events[event_id]:
            failure = per_user.get(str(item.vpp_user.client_user_id).lower()) or general
            if failure:
                failed_pks.add(item.pk)
                item_fail([item], f"Email update refused: {failure[1]}", failure[0])
    pushed = [item.pk for item in changed if item.pk not in failed_pks]
    # Kept on the item, so the read step's result names this change too.
    JobItem.objects.filter(pk__in=pushed).update(reason=EMAIL_SENT)
    item_move([item for item in items if item.pk not in failed_pks and item.vpp_user], "read")
    item_fail([item for item in items if not item.vpp_user], "Not a VPP user.")


def sync_read_phase(*, job: Job, items: list[JobItem], client: VppClient, token: str) -> None:
    """Read each item's user at Apple and bring its VppUser in step; every item succeeds with what changed."""
    wanted, notes = read_apple_states(items, client)
    by_note: dict[str, list[JobItem]] = {}
    for item in wanted.values():
        note = f"{EMAIL_SENT} {notes[item.pk]}" if item.reason == EMAIL_SENT else notes[item.pk]
        by_note.setdefault(note, []).append(item)
    for note, group in by_note.items():
        item_succeed(group, note)
    flag_blocked_invitations()  # an invitation an associated user with the same email blocks gets a reason


def read_apple_states(items: list[JobItem], client: VppClient) -> tuple[dict[str, JobItem], dict[int, str]]:
    """Read the items' users at Apple (one listing per user up to PER_USER_READ_LIMIT, else the
    full listing) and store status, email, idHash and invite code on their VppUsers.

    Returns ({clientUserId lower-case: item} of the items with a VppUser, {item pk: what changed}).
    A user Apple has no record of is marked retired.
    """
    wanted = {str(item.vpp_user.client_user_id).lower(): item for item in items if item.vpp_user}
    if len(wanted) <= PER_USER_READ_LIMIT:
        found: dict[str, VppApiUser] = {}
        for key in wanted:
            rows, _ = users_listing(client, client_user_id=key)
            for row in rows.values():
                found[key] = prefer(found.get(key), row)
    else:
        found, _ = users_listing(client)
    now = timezone.now()
    vpp_users, notes = [], {}
    for key, item in wanted.items():
        vpp_user = item.vpp_user
        apple = found.get(key)
        before = vpp_user.status
        if apple is None:
            vpp_user.status = VppUserStatus.RETIRED
            vpp_user.invite_code = ""
            notes[item.pk] = f"Apple has no record of this user (was {before} here); marked retired."
        else:
            vpp_user.status = VppUserStatus.from_apple(apple.status, vpp_user.status)
            vpp_user.apple_email = apple.email or vpp_user.apple_email
            vpp_user.id_hash = apple.id_hash or vpp_user.id_hash
            if apple.active:
                vpp_user.invite_code = apple.invite_code or vpp_user.invite_code
            if vpp_user.status != before:
                notes[item.pk] = f"Was {before} here; Apple says {apple.status}. Updated."
            else:
                notes[item.pk] = f"In step with Apple ({apple.status})."
        vpp_user.last_synced_at = now
        vpp_users.append(vpp_user)
    rows_update(vpp_users, ["status", "apple_email", "id_hash", "invite_code", "last_synced_at"])
    return wanted, notes
