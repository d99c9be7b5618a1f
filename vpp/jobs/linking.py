"""Linking VPP users with Managed Apple Accounts: what to send, and Apple's refusals in plain words.

Apple associates a user registered (``users/create``) or updated (``users/update``) with a
``managedAppleId`` at once, without an invitation, when the account belongs to the
organisation of the content token; otherwise it refuses the user with 9635, and an account
already linked to another VPP user with 9641 (docs/apple-vpp.md#managed-apple-accounts;
https://developer.apple.com/documentation/devicemanagement/create-users,
https://developer.apple.com/documentation/devicemanagement/update-users,
https://developer.apple.com/documentation/devicemanagement/handling-error-responses).

Used by the invite phase (silent linking, 9635 → invitation fallback) and the convert phase.
"""

from __future__ import annotations

from vpp.invitations.channels import channels_for
from vpp.jobs.rows import rows_update
from vpp.models import JobItem, VppUser

ACCOUNT_NOT_IN_ORGANISATION = 9635
ACCOUNT_LINKED_ELSEWHERE = 9641
LINK_REFUSALS = (ACCOUNT_NOT_IN_ORGANISATION, ACCOUNT_LINKED_ELSEWHERE)


def linked_remember(items: list[JobItem], *, linked: bool = True) -> None:
    """Store on each item's VppUser the account Apple linked (Apple never echoes ``managedAppleId``),
    or clear it (``linked=False``); one statement per thousand users."""
    known = [item for item in items if item.vpp_user]
    for item in known:
        item.vpp_user.managed_apple_account = item_account(item) if linked else ""
    rows_update([item.vpp_user for item in known], ["managed_apple_account"])


def item_account(item: JobItem) -> str:
    """The Managed Apple Account of the item's device user ("" for none)."""
    return (item.user.managed_apple_account if item.user else "") or ""


def reachable(item: JobItem, channel: str) -> bool:
    """True when a configured channel of ``channel`` (an InvitationChannel value) reaches the item's user."""
    return bool(item.user) and any(usable.can_reach(item.user) for usable in channels_for(channel))


def account_holder(account: str, *, vpp_user_id: int | None) -> str:
    """The other VPP user linked here with ``account``, as "Name (login)" ("" when we know nobody).

    Only a VPP user we linked ourselves counts (``VppUser.managed_apple_account``): Apple never
    names the holder, and a device user who merely has the account in their record may not be it.
    ``vpp_user_id`` is the user being linked (excluded).
    """
    linked = (
        VppUser.objects.filter(managed_apple_account__iexact=account)
        .exclude(pk=vpp_user_id)
        .select_related("user", "former_user")
        .first()
    )
    person = linked and (linked.user or linked.former_user)
    return str(person) if person else ""


def refusal_reason(number: int | None, account: str, *, vpp_user_id: int | None, apple_message: str) -> str:
    """The admin's sentence for Apple refusing to link ``account`` (9635, 9641, or any other number)."""
    if number == ACCOUNT_NOT_IN_ORGANISATION:
        return (
            f"Managed Apple Account {account} is not an account of this organisation "
            "(Apple 9635: it cannot be linked with this content token)."
        )
    if number == ACCOUNT_LINKED_ELSEWHERE:
        holder = account_holder(account, vpp_user_id=vpp_user_id)
        who = f"another VPP user: {holder}" if holder else "another VPP user not known here"
        return f"Managed Apple Account {account} is already linked to {who} (Apple 9641)."
    return f"Linking Managed Apple Account {account} failed: {apple_message}"
