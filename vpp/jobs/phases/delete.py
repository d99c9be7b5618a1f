"""Delete from VPP: revoke the users' licences (batched), then retire them (batched).

Both calls are safe to repeat, so a redelivered chunk simply sends them again. A 9609 ("unable
to find the registered user") is read at Apple: a user Apple lists as retired was retired by an
earlier run whose answer was lost ("already retired"); a user Apple has no record of at all is
reported as such. Both are retired here: they are not active at Apple either way. An error that
names some users fails those only; the rest of the batch is sent again without them.
"""

from __future__ import annotations

from django.utils import timezone

from vpp.apple.client import VppClient
from vpp.apple.errors import InvalidRequestError
from vpp.jobs.apple_io import (
    NOT_RETRIED,
    UNKNOWN_EVENT,
    USER_NOT_FOUND,
    batches,
    events_wait,
    failures_by_user,
    retired_at_apple,
    send_without_refused,
    users_listing,
)
from vpp.jobs.items import item_fail, item_succeed
from vpp.models import Job, JobItem, VppUser, VppUserStatus
from vpp.signals import vpp_event_after_commit

NOT_AT_APPLE = "Apple had no record of this user; marked retired here."
ALREADY_RETIRED = "Already retired at Apple (an earlier attempt retired this user); marked retired here."
DONE = "Licences revoked and user retired."


def delete_phase(*, job: Job, items: list[JobItem], client: VppClient, token: str) -> None:
    config = client.service_config()
    items = [item for item in items if _has_vpp_user(item)]

    refused: dict[int, tuple] = {}  # users (or whole batches) Apple refused at once
    revoke_events = _send(
        items, config.max_revoke_client_user_ids, lambda ids: client.revoke_assets(client_user_ids=ids), refused
    )
    failed, unknown = _outcomes(job, token, client, revoke_events)
    failed.update(refused)
    survivors = [item for item in items if item.pk not in failed]
    retire_events = _send(survivors, config.max_users, client.retire_users, refused)
    failed2, unknown2 = _outcomes(job, token, client, retire_events, retiring=True)
    failed.update(failed2)
    failed.update(refused)
    unknown |= unknown2
    unknown |= {pk for pk, (number, _) in failed.items() if number == USER_NOT_FOUND}
    failed = {pk: failure for pk, failure in failed.items() if failure[0] != USER_NOT_FOUND}

    by_pk = {item.pk: item for item in items}
    for item_pk, (number, message) in failed.items():
        item_fail([by_pk[item_pk]], message, number)
    done = [item for item in items if item.pk not in failed]
    # 9609 after a lost answer means "already done": Apple lists those users as retired.
    already = retired_at_apple(client, [_cuid(by_pk[pk]) for pk in unknown if pk in by_pk])
    VppUser.objects.filter(pk__in=[item.vpp_user_id for item in done]).update(
        status=VppUserStatus.RETIRED,
        invite_code="",
        last_synced_at=timezone.now(),
        last_error_number=None,
        last_error_message="",
    )
    for item in done:
        vpp_event_after_commit("user.retired", {"client_user_id": _cuid(item), "user_id": item.user_id})
    unknown_items = [item for item in done if item.pk in unknown]
    item_succeed([item for item in unknown_items if _cuid(item).lower() in already], ALREADY_RETIRED)
    item_succeed([item for item in unknown_items if _cuid(item).lower() not in already], NOT_AT_APPLE)
    item_succeed([item for item in done if item.pk not in unknown], DONE)


FORGOTTEN = f"Apple no longer knows the request (its event expired) and still lists this user as active. {NOT_RETRIED}"


def _active_at_apple(client: VppClient, items: list[JobItem]) -> set[str]:
    """The clientUserIds (lower case) of ITEMS that Apple lists with an active record."""
    active = set()
    for item in items:
        rows, _ = users_listing(client, client_user_id=_cuid(item))
        if any(row.active for row in rows.values()):
            active.add(_cuid(item).lower())
    return active


def _cuid(item: JobItem) -> str:
    return str(item.vpp_user.client_user_id)


def _has_vpp_user(item: JobItem) -> bool:
    if item.vpp_user is None:
        item_fail([item], "Not a VPP user.")
        return False
    return True


def _send(items: list[JobItem], size: int, call, refused: dict[int, tuple]) -> dict[str, list[JobItem]]:
    events: dict[str, list[JobItem]] = {}
    for batch in batches(items, size):
        by_cuid = {_cuid(item): item for item in batch}

        def named(failures: dict[str, tuple[int | None, str]], by_cuid=by_cuid) -> None:
            refused.update({by_cuid[cuid].pk: failure for cuid, failure in failures.items()})

        try:
            event_ids, sent = send_without_refused(call, list(by_cuid), named)
        except InvalidRequestError as exc:
            # An error naming nobody: the whole batch (9609 for it: reported as not at Apple below)
            reason = f"{exc.message} {NOT_RETRIED}"
            refused.update({item.pk: (exc.error_number, reason) for item in batch if item.pk not in refused})
            continue
        for event_id in event_ids:
            events.setdefault(event_id, []).extend(by_cuid[cuid] for cuid in sent)
    return events


def _outcomes(job, token, client, events, *, retiring: bool = False) -> tuple[dict[int, tuple], set[int]]:
    """Failed items {pk: (number, message)} and items Apple does not know.

    A retire event Apple no longer knows (9708) says nothing about its users: they are read at
    Apple, and one still active there fails with that reason instead of being reported retired.
    (A forgotten revoke goes on to the retire, whose outcome decides.)
    """
    finished, unknown_events = events_wait(job=job, token=token, client=client, event_ids=events)
    failed: dict[int, tuple] = {}
    forgotten = [item for event_id in unknown_events for item in events[event_id]]
    if forgotten and retiring:
        active = _active_at_apple(client, forgotten)
        failed.update({item.pk: (UNKNOWN_EVENT, FORGOTTEN) for item in forgotten if _cuid(item).lower() in active})
    not_known: set[int] = set()
    for event_id, status in finished.items():
        per_user, general = failures_by_user(status)
        for item in events[event_id]:
            failure = per_user.get(_cuid(item).lower()) or general
            if failure is None:
                continue
            if failure[0] == USER_NOT_FOUND:
                not_known.add(item.pk)
            else:
                failed[item.pk] = failure
    return failed, not_known
