"""Shared helpers for talking to Apple inside job phases: batching, events, listings."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

from django.conf import settings
from django.utils import timezone

from vpp.apple.client import VppClient
from vpp.apple.errors import InvalidRequestError
from vpp.apple.types import EventStatus, UserStatus, VppApiUser
from vpp.jobs.items import JobDeferred, job_heartbeat
from vpp.models import AppleNotification

T = TypeVar("T")

UNKNOWN_EVENT = 9708
USER_EXISTS = 9716
USER_NOT_FOUND = 9609
# Up to this many users, one filtered listing per user is cheaper than a full listing.
PER_USER_READ_LIMIT = 50


# Said after an Apple failure that nothing retries by itself (an event's per-user failure, a refusal).
NOT_RETRIED = "Nothing retries this by itself: use “Retry failed only” once the cause is fixed."


def send_without_refused(
    call: Callable[[list[str]], list[str]],
    keys: Sequence[str],
    on_refused: Callable[[dict[str, tuple[int | None, str]]], None],
    *,
    next_step: str = NOT_RETRIED,
) -> tuple[list[str], list[str]]:
    """Send ``keys`` (clientUserIds) with ``call``; an error naming some of them fails those only.

    ``call(keys)`` sends one request (create, update, retire, revoke) and returns Apple's event
    ids. When Apple refuses it synchronously and names users in ``errorInfo.clientUserIds``
    (9717 invalid e-mail, 9715 duplicate, 9609 unknown…), ``on_refused({key: (number, reason)})``
    records those users at once and the rest is sent again without them, in the same call
    (Apple: a synchronous error triggers no processing, docs/apple-vpp.md#errors). Returns
    ``(event ids, the keys they cover)``; both empty when every key was refused. An error that
    names none of ``keys``, a transient error and a token error are raised unchanged.
    ``next_step`` ends each reason: what happens next (default: nothing retries it by itself).
    """
    remaining = list(keys)
    while remaining:
        try:
            return call(remaining), remaining
        except InvalidRequestError as exc:
            named = {str(cuid).lower() for cuid in exc.client_user_ids}
            hit = [key for key in remaining if str(key).lower() in named]
            if not hit or exc.event_ids:
                raise
            on_refused(dict.fromkeys(hit, (exc.error_number, f"{exc.message} {next_step}")))
            remaining = [key for key in remaining if str(key).lower() not in named]
    return [], []


def batches(items: Sequence[T], size: int) -> Iterator[list[T]]:
    size = max(1, int(size))
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def poll_interval() -> float:
    return float(getattr(settings, "VPP_EVENT_POLL_INTERVAL", 30))


def wait_budget() -> float:
    """How long one task may wait for Apple's events before handing over (stays under the soft limit)."""
    return min(120.0, settings.CELERY_TASK_SOFT_TIME_LIMIT / 2)


def events_wait(*, job, token: str, client: VppClient, event_ids: Iterable[str]) -> tuple[dict, set]:
    """Poll events until finished or the budget runs out.

    Returns ({event_id: EventStatus}, {unknown event ids}). Raises JobDeferred when events are
    still pending at the end of the budget; finished ones must be recorded by the caller first,
    so the caller passes ``on_finished`` work through the returned dict on the next attempt instead.
    """
    pending = list(dict.fromkeys(event_ids))
    finished: dict[str, EventStatus] = {}
    unknown: set[str] = set()
    deadline = time.monotonic() + wait_budget()
    while pending:
        for event_id in list(pending):
            try:
                status = client.event_status(event_id)
            except InvalidRequestError as exc:
                if exc.error_number != UNKNOWN_EVENT:
                    raise
                unknown.add(event_id)  # Apple forgot it: the caller asks about the users instead
                pending.remove(event_id)
                continue
            if status.finished:
                finished[event_id] = status
                pending.remove(event_id)
        if not pending:
            break
        job_heartbeat(job=job, token=token)
        if time.monotonic() + poll_interval() > deadline:
            raise EventsStillPending(finished, unknown, poll_interval())
        sleep_until_notified(pending, poll_interval())
    return finished, unknown


NOTIFICATION_CHECK_SECONDS = 1.0


def sleep_until_notified(event_ids: list[str], seconds: float) -> None:
    """Wait ``seconds`` before the next poll, or less once Apple notifies us about one of the events.

    Apple wants ≥ 30 s between polls of a pending event (docs/apple-vpp.md#events), but a USER_MANAGEMENT /
    ASSET_MANAGEMENT notification (vpp/services/notifications.py stores it) says the event
    was processed, so it is polled at once. Event Status stays the source of truth: a
    notification only ends the wait. Only notifications received during this wait count, so
    one that arrived for a still-pending event cannot turn the wait into a busy poll.
    """
    since = timezone.now()
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(NOTIFICATION_CHECK_SECONDS, left))
        if AppleNotification.objects.filter(event_id__in=event_ids, received_at__gte=since).exists():
            return


class EventsStillPending(JobDeferred):
    def __init__(self, finished: dict, unknown: set, countdown: float):
        super().__init__(countdown)
        self.finished = finished
        self.unknown = unknown


def failures_by_user(
    status: EventStatus, *, next_step: str = NOT_RETRIED
) -> tuple[dict[str, tuple[int | None, str]], tuple[int | None, str] | None]:
    """Per-user failures of an event {clientUserId (lower case): (number, reason)}, plus a failure
    that names nobody (applies to all). Each reason ends with ``next_step``: what happens next."""
    per_user: dict[str, tuple[int | None, str]] = {}
    general = None
    for failure in status.failures:
        reason = f"{failure.message} {next_step}"
        if failure.client_user_ids:
            for cuid in failure.client_user_ids:
                per_user[str(cuid).lower()] = (failure.error_number, reason)
        else:
            general = (failure.error_number, reason)
    if status.status == "FAILED" and not per_user and general is None and status.num_completed < status.num_requested:
        general = (None, f"Apple reported the request as failed without details. {next_step}")
    return per_user, general


def retired_at_apple(client: VppClient, client_user_ids: Iterable[str]) -> set[str]:
    """Of these clientUserIds (lower case), the ones Apple lists as retired with no active record.

    A retire or revoke re-sent after its first answer was lost gets 9609 for users the first
    request already retired: that is "already done", not "unknown" (docs/apple-vpp.md#errors).
    """
    wanted = {str(cuid).lower() for cuid in client_user_ids}
    found: dict[str, VppApiUser] = {}
    if len(wanted) > PER_USER_READ_LIMIT:
        found, _ = users_listing(client)
    else:
        for cuid in wanted:
            rows, _ = users_listing(client, client_user_id=cuid)
            found.update(rows)
    retired = (UserStatus.RETIRED, UserStatus.DELETED)
    return {cuid for cuid in wanted if cuid in found and found[cuid].status in retired}


def _users_of(listing) -> Iterator[VppApiUser]:
    for entry in listing:
        if isinstance(entry, VppApiUser) or hasattr(entry, "client_user_id"):
            yield entry
        else:  # a page
            yield from entry


def prefer(current: VppApiUser | None, candidate: VppApiUser) -> VppApiUser:
    """Of several rows for one clientUserId, the active one wins over retired history."""
    if current is None:
        return candidate
    if candidate.active and not current.active:
        return candidate
    return current


def users_listing(client: VppClient, **filters) -> tuple[dict[str, VppApiUser], str | None]:
    """All rows of a listing keyed by clientUserId (active preferred), and its first-page versionId."""
    listing = client.iter_users(**filters)
    found: dict[str, VppApiUser] = {}
    for user in _users_of(listing):
        key = str(user.client_user_id).lower()
        found[key] = prefer(found.get(key), user)
    return found, getattr(listing, "version_id", None)


def users_version_now(client: VppClient) -> str:
    """Apple's current users versionId, read cheaply with a filter that matches nobody."""
    import uuid

    try:
        _, version = users_listing(client, client_user_id=str(uuid.uuid4()))
    except InvalidRequestError:
        return ""
    return version or ""
