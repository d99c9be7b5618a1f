"""Send VPP invitation: create at Apple → read invite codes back → deliver the link.

A user with a Managed Apple Account is created with it (``managedAppleId``): Apple associates
it at once and no invitation is sent. Apple's 9635 (the account is not of this organisation)
sends the user back to step ``create_invite`` (created again without the account, then
invited) when a channel reaches them; 9641 fails the user with the other holder named
(vpp/jobs/linking.py).

Never twice: an item whose create may already have reached Apple (``request_sent_at`` set)
is checked at Apple first (its event, or the user itself) before any new create; Apple's
9716 "already exists" counts as created. Deliveries are unique per (user, channel, job).
"""

from __future__ import annotations

import contextlib
import logging
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from vpp.apple.client import VppClient
from vpp.apple.errors import InvalidRequestError, PermanentVppError, TransientVppError
from vpp.apple.types import RequestUser
from vpp.invitations.channels import Invitation, channels_for, invitation_organisation
from vpp.jobs import readback
from vpp.jobs.apple_io import (
    NOT_RETRIED,
    USER_EXISTS,
    EventsStillPending,
    batches,
    events_wait,
    failures_by_user,
    poll_interval,
    send_without_refused,
    users_version_now,
)
from vpp.jobs.items import JobDeferred, backoff_seconds, item_fail, item_set_step, item_succeed
from vpp.jobs.leases import CREATE_TURN, lease_held
from vpp.jobs.linking import (
    ACCOUNT_NOT_IN_ORGANISATION,
    LINK_REFUSALS,
    item_account,
    linked_remember,
    reachable,
    refusal_reason,
)
from vpp.models import (
    InvitationDelivery,
    ItemStatus,
    Job,
    JobAction,
    JobItem,
    VppServerSetting,
    VppUser,
    VppUserStatus,
)
from vpp.signals import vpp_event_after_commit

logger = logging.getLogger(__name__)


# "create": with the user's Managed Apple Account, if any; "create_invite": without it (9635 fallback).
CREATE_STEPS = ("create", "create_invite")
# One sentence for all (the account is on the user's record): 5,000 linked users are one UPDATE.
LINKED_SILENTLY = "Linked silently with the user's Managed Apple Account; no invitation sent."
# What an admin reads on a user whose create Apple refused or failed: Apple holds nothing for it.
NOT_ADDED = "Not added to VPP (not a VPP user):"


def _cuid(item: JobItem) -> str:
    return str(item.vpp_user.client_user_id)


def job_capture_version(*, job: Job, client: VppClient) -> None:
    """Remember Apple's users versionId before our first create: the read-back watermark starts there."""
    if job.apple_version_id:
        return
    version = users_version_now(client)
    if version:
        Job.objects.filter(pk=job.pk, apple_version_id="").update(apple_version_id=version)
        job.apple_version_id = version


def invite_prepare(*, job: Job, client: VppClient) -> None:
    """Before the first create: Apple's users versionId (the read-back is a delta from it).

    Apple being unavailable is not fatal here: without the watermark the read-back asks Apple
    user by user. Token errors propagate (the engine stops the job and records the token's health).
    """
    with contextlib.suppress(TransientVppError):
        job_capture_version(job=job, client=client)


# --------------------------------------------------------------------------- create


def invite_phase(*, job: Job, items: list[JobItem], client: VppClient, token: str) -> None:
    """One chunk: create at Apple → read the invite codes back → deliver, each step recorded on the item."""
    creating = [item for item in items if item.step in CREATE_STEPS]
    undecided: list[JobItem] = []
    if creating:
        # Normally captured at dispatch; without it every read-back would be one request per user.
        job_capture_version(job=job, client=client)
        undecided = _create(job=job, items=creating, client=client, token=token)
    reading = [item for item in items if item.step == "readback" and item.status == ItemStatus.IN_FLIGHT]
    if reading:
        _read_back(job=job, items=reading, client=client, token=token)
    delivering = [item for item in items if item.step == "deliver" and item.status == ItemStatus.IN_FLIGHT]
    if delivering:
        deliver_invitations(job=job, items=delivering, client=client)
    if undecided:
        # Only the users whose create answer was lost wait for Apple's rule; the rest went on above.
        raise JobDeferred(poll_interval(), reason=_undecided_reason(undecided))


def _undecided_reason(undecided: list[JobItem]) -> str:
    """The panel's sentence for creates whose answer was lost (Apple's 10-minute rule)."""
    resend_at = min(item.request_sent_at for item in undecided) + _recheck_after()
    return (
        f"Apple's 10-minute rule: the answer to the create of {len(undecided)} user(s) was lost (a worker "
        f"stopped). Apple is asked about them every {poll_interval():.0f} s; a user Apple still does not "
        f"show is sent again from {resend_at:%H:%M:%S} UTC, never earlier."
    )


def _create(*, job: Job, items: list[JobItem], client: VppClient, token: str) -> list[JobItem]:
    """Create the items at Apple (or confirm earlier creates); returns the undecided ones: a create
    whose answer was lost that Apple does not show yet, younger than Apple's 10-minute rule."""
    config = client.service_config()
    waiting: dict[str, list[JobItem]] = {}
    to_create: list[JobItem] = []
    created: list[JobItem] = []
    undecided: list[JobItem] = []
    for item in items:
        if item.vpp_user is None:
            item_fail([item], "The VPP user record is gone.")
        elif item.apple_event_id:
            waiting.setdefault(item.apple_event_id, []).append(item)
        elif item.request_sent_at:
            # A create may have reached Apple without us learning its event id (the worker died).
            if _exists_at_apple(client, item):
                created.append(item)
            elif timezone.now() - item.request_sent_at < _recheck_after():
                undecided.append(item)  # Apple may still be working on it: look again later
            else:
                to_create.append(item)  # Apple's rule: still nothing after that long, send it again
        else:
            to_create.append(item)
    item_set_step(created, "readback")

    if to_create:
        # One chunk creates at a time: the chunks then finish their Apple steps one after another,
        # and one chunk's email work overlaps the next chunks' rate-limited requests.
        with lease_held(job, CREATE_TURN, token=token):
            for batch in batches(to_create, config.max_users):
                waiting.update(_send_create(client, batch))

    try:
        finished, unknown = events_wait(job=job, token=token, client=client, event_ids=waiting)
    except EventsStillPending as pending:
        _record_create_events(job, waiting, pending.finished, pending.unknown)
        still = {event_id: group for event_id, group in waiting.items() if event_id not in pending.finished}
        _settle_overdue_events(client, {e: g for e, g in still.items() if e not in pending.unknown})
        raise
    fallback = _record_create_events(job, waiting, finished, unknown)
    if fallback:  # 9635: created again without the account, then invited (at most once per item)
        undecided += _create(job=job, items=fallback, client=client, token=token)
    return undecided


def _settle_overdue_events(client: VppClient, pending: dict[str, list[JobItem]]) -> None:
    """Events still PENDING after Apple's 10 minutes: stop waiting on them, ask Apple about the users.

    Apple: "if an event is still PENDING after 10 minutes, retry the original request"
    (docs/apple-vpp.md#events). Users Apple already holds go on to the read-back; the others
    lose their event id and their clock restarts (``request_sent_at`` = now): they are looked up
    at Apple once more after another ``_recheck_after()`` and only then created again (a late
    finish of the old event then answers 9716, which counts as created). A slow answer to the
    create itself therefore never causes a second create, and a job never waits for ever on one
    event id.
    """
    cutoff = timezone.now() - _recheck_after()
    overdue = [
        item
        for group in pending.values()
        for item in group
        if item.request_sent_at is not None and item.request_sent_at <= cutoff
    ]
    if not overdue:
        return
    held = [item for item in overdue if _exists_at_apple(client, item)]
    missing = [item for item in overdue if item not in held]
    JobItem.objects.filter(pk__in=[item.pk for item in held]).update(apple_event_id="")
    item_set_step(held, "readback")
    JobItem.objects.filter(pk__in=[item.pk for item in missing]).update(
        apple_event_id="", request_sent_at=timezone.now()
    )
    logger.warning(
        "create events still pending after %s: %d users found at Apple, %d to send again",
        _recheck_after(),
        len(held),
        len(missing),
    )


def _recheck_after() -> timedelta:
    """How long an unconfirmed create must stay invisible at Apple before it is sent again.

    Apple: if an event is still PENDING after 10 minutes, retry the original request (docs/apple-vpp.md#events).
    """
    return timedelta(seconds=getattr(settings, "VPP_CREATE_RECHECK_SECONDS", 600))


def _exists_at_apple(client: VppClient, item: JobItem) -> bool:
    user = client.get_user(_cuid(item))
    return user is not None and user.active


def _send_create(client: VppClient, batch: list[JobItem]) -> dict[str, list[JobItem]]:
    """Create the batch at Apple; {event id: its items} (several when Apple lowered maxUsers meanwhile)."""
    ids = [item.pk for item in batch]
    # Committed before the request: if we die before the answer is stored, we ask Apple first.
    JobItem.objects.filter(pk__in=ids).update(request_sent_at=timezone.now())
    by_cuid = {_cuid(item): item for item in batch}
    users = {
        cuid: RequestUser(
            client_user_id=cuid,
            email=(item.user.email if item.user else None) or None,
            managed_apple_id=_linking_account(item) or None,
        )
        for cuid, item in by_cuid.items()
    }

    def refused(failures: dict[str, tuple[int | None, str]]) -> None:
        # Apple refused these users synchronously: it holds nothing for them (not VPP users).
        items = [by_cuid[cuid] for cuid in failures]
        JobItem.objects.filter(pk__in=[item.pk for item in items]).update(request_sent_at=None)
        for cuid, (number, reason) in failures.items():
            item_fail([by_cuid[cuid]], f"{NOT_ADDED} {reason}", number)

    try:
        event_ids, sent = send_without_refused(
            lambda cuids: client.create_users([users[cuid] for cuid in cuids]), list(by_cuid), refused
        )
    except TransientVppError as exc:
        if not exc.outcome_unknown:  # Apple answered (429/5xx): nothing was queued
            JobItem.objects.filter(pk__in=ids).update(request_sent_at=None)
        raise
    except InvalidRequestError as exc:
        JobItem.objects.filter(pk__in=ids).update(request_sent_at=None)
        item_fail(batch, f"{NOT_ADDED} {exc.message} {NOT_RETRIED}", exc.error_number)
        return {}
    except PermanentVppError:
        # Apple refused the request as a whole (e.g. the token was revoked): nothing was created.
        JobItem.objects.filter(pk__in=ids).update(request_sent_at=None)
        raise
    if not event_ids:
        return {}
    batch = [by_cuid[cuid] for cuid in sent]
    groups = _event_groups(client, batch, event_ids)
    for event_id, group in groups.items():
        JobItem.objects.filter(pk__in=[item.pk for item in group]).update(apple_event_id=event_id)
        for item in group:
            item.apple_event_id = event_id
    return groups


def _event_groups(client: VppClient, batch: list[JobItem], event_ids: list[str]) -> dict[str, list[JobItem]]:
    """Which items each event covers. The client splits by the current maxUsers, in order.

    If the split cannot be matched (the limits changed twice during the call), no event id is
    stored: request_sent_at stays set, so the items are looked up at Apple before any resend.
    """
    if len(event_ids) == 1:
        return {event_ids[0]: batch}
    sizes = [len(part) for part in client.split_users([RequestUser(_cuid(item)) for item in batch])]
    if len(sizes) != len(event_ids):
        logger.warning(
            "create for %d users returned %d events; confirming with Apple instead", len(batch), len(event_ids)
        )
        return {}
    groups, start = {}, 0
    for event_id, size in zip(event_ids, sizes, strict=True):
        groups[event_id] = batch[start : start + size]
        start += size
    return groups


def _linking_account(item: JobItem) -> str:
    """The Managed Apple Account this item's create carries ("" after a 9635 fallback)."""
    return item_account(item) if item.step == "create" else ""


def _record_create_events(job: Job, waiting: dict[str, list[JobItem]], finished: dict, unknown: set) -> list[JobItem]:
    """Store Apple's answers: created items go on to the read-back; returns the 9635 fallbacks to create again."""
    created: list[JobItem] = []
    fallback: list[JobItem] = []
    failed: list[JobItem] = []
    for event_id in unknown:
        # Apple no longer knows the event: forget it; the next attempt asks about each user.
        JobItem.objects.filter(pk__in=[i.pk for i in waiting[event_id]]).update(apple_event_id="")
    for event_id, status in finished.items():
        per_user, general = failures_by_user(status)
        for item in waiting[event_id]:
            failure = per_user.get(_cuid(item).lower()) or general
            if failure is None or failure[0] == USER_EXISTS:
                created.append(item)
            elif _linking_account(item) and failure[0] in LINK_REFUSALS:
                refusal = _link_refused(job, item, failure)
                if refusal:
                    failed.append(item)
                    item_fail([item], f"{NOT_ADDED} {refusal}", failure[0])
                else:
                    fallback.append(item)
            else:
                failed.append(item)
                item_fail([item], f"{NOT_ADDED} {failure[1]}", failure[0])
    # Apple's event says these creates failed: Apple holds no record for them, so nothing is
    # "sent" any more and the job's end settles them as not VPP users (engine._settle_failed_vpp_users).
    JobItem.objects.filter(pk__in=[item.pk for item in failed]).update(request_sent_at=None)
    item_set_step(created, "readback")
    return fallback


def _link_refused(job: Job, item: JobItem, failure: tuple[int | None, str]) -> str:
    """Apple would not link the item's account. 9635 with a channel that reaches the user: back
    to step ``create_invite`` (created again without the account, then invited), returns "".
    Otherwise returns the reason the item fails with."""
    account = item_account(item)
    reason = refusal_reason(failure[0], account, vpp_user_id=item.vpp_user_id, apple_message=failure[1])
    if failure[0] != ACCOUNT_NOT_IN_ORGANISATION:
        return reason
    if not reachable(item, job.channel):
        return f"{reason} No invitation channel reaches this user, so nothing was sent."
    reason += " Invited instead."
    JobItem.objects.filter(pk=item.pk, status=ItemStatus.IN_FLIGHT).update(
        step="create_invite", apple_event_id="", request_sent_at=None, reason=reason[:500], error_number=failure[0]
    )
    item.step, item.apple_event_id, item.request_sent_at = "create_invite", "", None
    item.reason, item.error_number = reason, failure[0]
    return ""


# --------------------------------------------------------------------------- read back


def _read_back(*, job: Job, items: list[JobItem], client: VppClient, token: str) -> None:
    """Learn the invite codes in bulk (a delta listing shared by the job's chunks), else user by user."""
    unknown = readback.codes_list(job=job, items=items, client=client, token=token)
    absent: set[int] = set()  # Apple lists no active record: the create did not take
    for item in unknown:
        apple = client.get_user(_cuid(item))
        if apple is not None:
            readback.store_apple_records(job, {_cuid(item).lower(): apple})
        else:
            absent.add(item.pk)
    if unknown:
        readback.refresh_vpp_users(unknown)  # the others were refreshed by codes_list
    associated = [item for item in items if item.vpp_user.status == VppUserStatus.ASSOCIATED]
    ready = [item for item in items if item.vpp_user.status != VppUserStatus.ASSOCIATED and item.vpp_user.invite_code]
    missing = [item for item in items if not readback.has_code(item)]
    linked = [item for item in associated if item_account(item) and item.error_number != ACCOUNT_NOT_IN_ORGANISATION]
    linked_remember(linked)
    item_succeed(linked, LINKED_SILENTLY)
    item_succeed(
        [item for item in associated if item not in linked], "Already associated at Apple; no invitation needed."
    )
    for item in associated:
        item.status = ItemStatus.SUCCEEDED
    gone = [item for item in missing if item.pk in absent]
    # Not at Apple: nothing is "sent" any more, so the job's end settles them as not VPP users
    # instead of leaving them pending for ever (a full sync only touches users Apple lists).
    JobItem.objects.filter(pk__in=[item.pk for item in gone]).update(request_sent_at=None)
    item_fail(gone, f"{NOT_ADDED} Apple lists no record for this user after its create. {NOT_RETRIED}")
    item_fail(missing, f"Apple did not return an invitation code for this user yet. {NOT_RETRIED}")
    item_set_step(ready, "deliver")


# --------------------------------------------------------------------------- deliver


def deliver_invitations(*, job: Job, items: list[JobItem], client: VppClient, channel: str = "") -> None:
    """Send the items' invitation links on ``channel`` (an InvitationChannel value; default the job's).

    At most once per user, channel and job (an ``InvitationDelivery`` row is committed first).
    Delivered users become invited with ``invited_at`` now; a reminders job counts the reminder
    (``reminders_sent`` + 1), any other job starts the count again. A mail server or APNs that
    may come back leaves the items at their step and raises JobDeferred (backoff).
    """
    config = client.service_config()
    setting = VppServerSetting.load()
    organisation = invitation_organisation(setting)
    sent: dict[int, list[str]] = {item.pk: [] for item in items}
    errors: dict[int, list[str]] = {item.pk: [] for item in items}
    retry: set[int] = set()  # items a channel failed for a reason that may pass
    for usable in channels_for(channel or job.channel):
        can_reach = [item for item in items if item.user and item.vpp_user and usable.can_reach(item.user)]
        links = {item.pk: config.invitation_url(item.vpp_user.invite_code) for item in can_reach}
        fresh, already = _reserve_deliveries(job, usable.name, can_reach, links)
        for item in already:
            sent[item.pk].append(usable.name)
        invitations = [Invitation(item.vpp_user_id, item.user, links[item.pk], organisation) for item in fresh]
        results = usable.send(invitations, setting=setting) if invitations else []
        _record_deliveries(job, usable.name, fresh, results, sent, errors, retry)

    now = timezone.now()
    delivered = [item for item in items if sent[item.pk]]
    for channel_name in {"+".join(sorted(sent[item.pk])) for item in delivered}:
        ids = [item.vpp_user_id for item in delivered if "+".join(sorted(sent[item.pk])) == channel_name]
        VppUser.objects.filter(pk__in=ids).update(
            status=VppUserStatus.INVITED,
            invited_at=now,
            invitation_count=F("invitation_count") + 1,
            last_invitation_channel=channel_name,
            reminders_sent=F("reminders_sent") + 1 if job.action == JobAction.REMINDERS else 0,
        )
    for reason in {item.reason for item in delivered}:  # a 9635 fallback keeps saying why it was invited
        item_succeed([item for item in delivered if item.reason == reason], reason)
    later = [item for item in items if not sent[item.pk] and item.pk in retry]
    for item in items:
        if not sent[item.pk] and item.pk not in retry:
            reason = "; ".join(errors[item.pk]) or "No channel could reach this user."
            item_fail([item], reason)
            VppUser.objects.filter(pk=item.vpp_user_id, status=VppUserStatus.PENDING).update(
                status=VppUserStatus.INVITED
            )  # Apple has the user and its code; only the message failed
    if later:
        # The mail server or APNs may be back soon: these items stay at "deliver" and the chunk
        # runs again with backoff; each run is an attempt, so a lasting outage fails them.
        wait = backoff_seconds(later)
        Job.objects.filter(pk=job.pk).update(
            delivery_retry_until=timezone.now() + timedelta(seconds=wait),
            delivery_retry_reason=errors[later[0].pk][-1][:300],
        )
        raise JobDeferred(wait, counts_as_attempt=True)


def _reserve_deliveries(job, channel_name, items, links) -> tuple[list[JobItem], list[JobItem]]:
    """Insert the 'sending' rows first; an existing row means it was (maybe) sent already."""
    rows_before = InvitationDelivery.objects.filter(
        job=job, channel=channel_name, vpp_user_id__in=[item.vpp_user_id for item in items]
    ).exclude(state=InvitationDelivery.State.FAILED)
    existing = set(rows_before.values_list("vpp_user_id", flat=True))
    # A FAILED row of an earlier attempt may be tried again; SENT/SENDING never.
    InvitationDelivery.objects.filter(
        job=job,
        channel=channel_name,
        state=InvitationDelivery.State.FAILED,
        vpp_user_id__in=[item.vpp_user_id for item in items],
    ).delete()
    fresh = [item for item in items if item.vpp_user_id not in existing]
    rows = [
        InvitationDelivery(vpp_user_id=item.vpp_user_id, channel=channel_name, job=job, link=links[item.pk])
        for item in fresh
    ]
    try:
        with transaction.atomic():
            InvitationDelivery.objects.bulk_create(rows, batch_size=500)
    except IntegrityError:  # another worker got some of them first: keep only ours
        mine = []
        for row, item in zip(rows, fresh, strict=True):
            try:
                with transaction.atomic():
                    row.save()
                mine.append(item)
            except IntegrityError:
                existing.add(item.vpp_user_id)
        fresh = mine
    already = [item for item in items if item.vpp_user_id in existing]
    return fresh, already


def _record_deliveries(job, channel_name, fresh, results, sent, errors, retry) -> None:
    now = timezone.now()
    ok_ids, failed = [], []
    for item, result in zip(fresh, results, strict=True):
        if result.ok:
            ok_ids.append(item.vpp_user_id)
            sent[item.pk].append(channel_name)
        else:
            failed.append((item, result.error))
            errors[item.pk].append(result.error)
            if result.transient:
                retry.add(item.pk)
    deliveries = InvitationDelivery.objects.filter(job=job, channel=channel_name)
    deliveries.filter(vpp_user_id__in=ok_ids).update(state=InvitationDelivery.State.SENT, sent_at=now)
    for item, result in zip(fresh, results, strict=True):
        if result.ok:
            vpp_event_after_commit(
                "invitation.sent",
                {
                    "client_user_id": str(item.vpp_user.client_user_id) if item.vpp_user else None,
                    "user_id": item.user_id,
                    "channel": channel_name,
                    "job_id": job.pk,
                },
            )
    for item, error in failed:
        deliveries.filter(vpp_user_id=item.vpp_user_id).update(state=InvitationDelivery.State.FAILED, error=error[:500])
