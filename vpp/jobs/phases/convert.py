"""Link Managed Apple Accounts: invited users who gained one are linked by ``users/update``.

No second create: Apple already holds these users (Registered, with an invitation code);
``POST /v2/users/update`` with ``managedAppleId`` links the account in place
(https://developer.apple.com/documentation/devicemanagement/update-users; the legacy
"Associating an Apple ID with a VPP user" article names Edit User as the second way to link).
Apple's v2 docs do not promise that the update flips the user to Associated, so a user counts
as linked only when Apple's record reads Associated afterwards (phase ``link_read``);
refusals (9635, 9641) fail the user in plain words and leave its invitation valid
(docs/apple-vpp.md#managed-apple-accounts).

A users/update that is sent twice (a redelivered chunk) sets the same account again, which
Apple accepts: unlike a create it needs no "sent already?" check.
"""

from __future__ import annotations

from vpp.apple.client import VppClient
from vpp.apple.types import RequestUser
from vpp.jobs.apple_io import batches, events_wait, failures_by_user, send_without_refused
from vpp.jobs.items import item_fail, item_move, item_succeed
from vpp.jobs.linking import LINK_REFUSALS, item_account, linked_remember, refusal_reason
from vpp.jobs.phases.sync import read_apple_states
from vpp.models import Job, JobItem, VppUserStatus

LINKED = "Linked with the user's Managed Apple Account; the invitation is no longer needed."


def convert_link_phase(*, job: Job, items: list[JobItem], client: VppClient, token: str) -> None:
    """users/update with each invited user's Managed Apple Account; accepted ones go on to ``link_read``."""
    sendable, done = [], []
    for item in items:
        if item.vpp_user is None:
            item_fail([item], "Not a VPP user.")
        elif item.vpp_user.status == VppUserStatus.ASSOCIATED:
            done.append(item)
        elif not item_account(item):
            item_fail([item], "The device user no longer has a Managed Apple Account.")
        elif item.vpp_user.status != VppUserStatus.INVITED:
            item_fail([item], f"Not invited at Apple (status {item.vpp_user.get_status_display()}); nothing to link.")
        else:
            sendable.append(item)
    item_succeed(done, "Already associated at Apple; nothing to link.")

    config = client.service_config()
    events: dict[str, list[JobItem]] = {}
    for batch in batches(sendable, config.max_users):
        by_cuid = {str(item.vpp_user.client_user_id): item for item in batch}
        users = {cuid: RequestUser(cuid, managed_apple_id=item_account(item)) for cuid, item in by_cuid.items()}

        def refused(failures: dict[str, tuple[int | None, str]], by_cuid=by_cuid) -> None:
            # Apple refused these users synchronously (naming them): only they fail.
            for cuid, (number, reason) in failures.items():
                account = item_account(by_cuid[cuid])
                item_fail([by_cuid[cuid]], refusal_reason(number, account, vpp_user_id=None, apple_message=reason))

        event_ids, sent = send_without_refused(
            lambda cuids, users=users: client.update_users([users[cuid] for cuid in cuids]), list(by_cuid), refused
        )
        for event_id in event_ids:
            events.setdefault(event_id, []).extend(by_cuid[cuid] for cuid in sent)
    finished, unknown = events_wait(job=job, token=token, client=client, event_ids=events)
    accepted: list[JobItem] = []
    for event_id in unknown:
        accepted += events[event_id]  # Apple forgot the event: the read-back tells
    for event_id, status in finished.items():
        per_user, general = failures_by_user(status)
        for item in events[event_id]:
            failure = per_user.get(str(item.vpp_user.client_user_id).lower()) or general
            if failure is None:
                accepted.append(item)
                continue
            account = item_account(item)
            if failure[0] in LINK_REFUSALS:
                reason = refusal_reason(failure[0], account, vpp_user_id=item.vpp_user_id, apple_message=failure[1])
                item_fail([item], f"{reason} The invitation stays valid.", failure[0])
            else:
                item_fail([item], refusal_reason(failure[0], account, vpp_user_id=None, apple_message=failure[1]))
    linked_remember(accepted)
    item_move(accepted, "link_read")


def convert_read_phase(*, job: Job, items: list[JobItem], client: VppClient, token: str) -> None:
    """Read the linked users back: Associated at Apple → succeeded; anything else fails with what Apple shows."""
    wanted, _notes = read_apple_states(items, client)
    linked = [item for item in wanted.values() if item.vpp_user.status == VppUserStatus.ASSOCIATED]
    item_succeed(linked, LINKED)
    unlinked = [item for item in wanted.values() if item.vpp_user.status != VppUserStatus.ASSOCIATED]
    linked_remember(unlinked, linked=False)
    for item in unlinked:
        account = item_account(item)
        item_fail(
            [item],
            f"Apple accepted Managed Apple Account {account} but still shows the user as "
            f"{item.vpp_user.get_status_display().lower()}; the invitation stays valid.",
        )
    item_fail([item for item in items if not item.vpp_user], "Not a VPP user.")
