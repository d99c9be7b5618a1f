"""Eligibility: who a bulk action will act on, and why the others are skipped.

The same plan is computed for the confirmation modal and again, authoritatively, when the
admin confirms (the data may have changed in between).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field

from django.db.models import QuerySet

from vpp.apple.types import apple_accepts_email
from vpp.invitations.channels import channels_for
from vpp.models import InvitationChannel, JobAction, VppUserStatus
from vpp.selectors import users_with_vpp_facts

SKIP_REASONS = {
    "inactive": "Inactive user",
    "no_device": "No activated iOS/macOS device",
    "associated": "Already associated with an Apple Account",
    "pending": "Already pending at Apple",
    "busy": "Already in a running VPP job",
    "no_email": "No email address (invitations go by email)",
    "no_push": "No push token (invitations go by push notification)",
    "no_contact": "No email address and no push token",
    "no_channel": "The chosen invitation channel is not configured",
    "not_vpp": "Not a VPP user",
    "retired": "Already retired from VPP",
    "user_deleted": "The device user no longer exists",
    "no_managed_account": "No Managed Apple Account",
    "not_invited": "Not invited yet (use Send VPP invitation)",
    "reminders_done": "All reminders already sent",
    "apple_email": "Email address Apple refuses (no dot in its domain, e.g. someone@localhost)",
}

# What each eligible user will go through (first job phase), by action.
STEP_CREATE = "create"  # create at Apple, read the invite code back, deliver
STEP_DELIVER = "deliver"  # re-invite: Apple already has the user and its invite code
STEP_DELETE = "delete"
STEP_UPDATE = "update"
STEP_LINK = "link"  # convert: users/update with the Managed Apple Account, then read back
STEP_REMIND = "remind"  # reminders: the invitation again, on the round's channel


@dataclass
class PlanRow:
    user_id: int
    label: str
    vpp_user_id: int | None
    vpp_status: str = ""
    step: str = ""  # empty when skipped
    skip_reason: str = ""
    # Invite: registered with the user's Managed Apple Account (associated at once, no message).
    silent: bool = False


@dataclass
class Plan:
    action: str
    channel: str = ""
    rows: list[PlanRow] = field(default_factory=list)

    @property
    def eligible(self) -> list[PlanRow]:
        return [row for row in self.rows if not row.skip_reason]

    @property
    def skipped(self) -> list[PlanRow]:
        return [row for row in self.rows if row.skip_reason]

    def skip_counts(self) -> list[tuple[str, str, int]]:
        """(code, readable reason, count), most frequent first."""
        counts = Counter(row.skip_reason for row in self.skipped)
        return [(code, SKIP_REASONS[code], n) for code, n in counts.most_common()]

    def skip_rows(self, examples: int = 5) -> list[tuple[str, str, int, list[str]]]:
        """(code, readable reason, count, the first EXAMPLES users' labels), most frequent first.

        The confirmation names the users behind a reason the admin can fix (an address Apple refuses).
        """
        named = {"apple_email"}
        labels: dict[str, list[str]] = {}
        for row in self.skipped:
            if row.skip_reason in named and len(labels.setdefault(row.skip_reason, [])) < examples:
                labels[row.skip_reason].append(row.label)
        return [(code, reason, n, labels.get(code, [])) for code, reason, n in self.skip_counts()]

    def step_counts(self) -> dict[str, int]:
        return dict(Counter(row.step for row in self.eligible))

    @property
    def silent_count(self) -> int:
        """Eligible users an invite links silently with their Managed Apple Account."""
        return sum(1 for row in self.eligible if row.silent)

    def digest(self) -> str:
        """A SHA-256 hex digest of what this plan would do: the action, the invitation channel, and
        every user's (id, step, skip reason, linked silently or not). Two plans with the same digest
        act on the same users in the same way; the bulk views carry it, signed, from the
        confirmation to the apply.
        """
        rows = (f"{row.user_id}:{row.step}:{row.skip_reason}{':silent' if row.silent else ''}" for row in self.rows)
        parts = [self.action, self.channel, *rows]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _label(facts: dict) -> str:
    return f"{facts['display_name']} ({facts['login_id']})"


def _invite_skip(facts: dict, channel: str) -> str:
    if not facts["is_active"]:
        return "inactive"
    if not facts["has_apple_device"]:
        return "no_device"
    status = facts["vpp_user__status"]
    if status == VppUserStatus.ASSOCIATED:
        return "associated"
    if facts["in_open_job"]:
        return "pending" if status == VppUserStatus.PENDING else "busy"
    if _links_silently(facts):
        return ""  # Apple associates them at once: no channel needed
    return _channel_skip(facts, channel)


def _links_silently(facts: dict) -> bool:
    """An invite registers this user with its Managed Apple Account (docs/apple-vpp.md#managed-apple-accounts).

    Only a user Apple does not hold yet (a create); a user already invited keeps its invitation
    and is linked by Convert (users/update) instead.
    """
    return bool(facts["managed_apple_account"]) and not _reinvite(facts)


def _reinvite(facts: dict) -> bool:
    return facts["vpp_user__status"] == VppUserStatus.INVITED and bool(facts["vpp_user__invite_code"])


def _channel_skip(facts: dict, channel: str) -> str:
    """Why no channel of ``channel`` reaches this user ("" when one does)."""
    names = [usable.name for usable in channels_for(channel)]
    if not names:
        return "no_channel"
    if facts["vpp_user__status"] != VppUserStatus.INVITED and not apple_accepts_email(facts["email"]):
        return "apple_email"  # a create sends the address: Apple would refuse it (9717)
    reachable = {"email": bool(facts["email"]), "push": bool(facts["has_push_token"])}
    if not any(reachable.get(name) for name in names):
        if channel == InvitationChannel.BOTH:
            return "no_contact"
        return "no_push" if channel == InvitationChannel.PUSH else "no_email"
    return ""


def _delete_skip(facts: dict) -> str:
    status = facts["vpp_user__status"]
    if status is None:
        return "not_vpp"
    if status == VppUserStatus.RETIRED:
        return "retired"
    if facts["in_open_job"]:
        return "pending" if status == VppUserStatus.PENDING else "busy"
    return ""


def _convert_skip(facts: dict) -> str:
    # Apple holds the user (not retired, not busy: as for a delete), invited, and it has an account.
    skip = _delete_skip(facts)
    if skip:
        return skip
    if facts["vpp_user__status"] == VppUserStatus.ASSOCIATED:
        return "associated"
    if not facts["is_active"]:
        return "inactive"
    if not facts["managed_apple_account"]:
        return "no_managed_account"
    if facts["vpp_user__status"] != VppUserStatus.INVITED:
        return "not_invited"
    return ""


def _remind_skip(facts: dict, channel: str) -> str:
    status = facts["vpp_user__status"]
    if status == VppUserStatus.ASSOCIATED:
        return "associated"
    if not facts["is_active"]:
        return "inactive"
    if facts["in_open_job"]:
        return "busy"
    if not _reinvite(facts):
        return "not_invited"
    return _channel_skip(facts, channel)


def _sync_skip(facts: dict) -> str:
    if facts["vpp_user__status"] is None:
        return "not_vpp"
    if facts["in_open_job"]:
        return "busy"
    return ""


def vpp_plan_build(*, action: str, users: QuerySet, channel: str = "") -> Plan:
    """Eligibility of every user in ``users`` for ``action`` (one query)."""
    plan = Plan(action=action, channel=channel)
    for facts in users_with_vpp_facts(users.order_by("pk")).iterator(chunk_size=2000):
        silent = False
        if action == JobAction.INVITE:
            skip = _invite_skip(facts, channel)
            step = STEP_DELIVER if _reinvite(facts) else STEP_CREATE
            silent = _links_silently(facts)
        elif action == JobAction.DELETE:
            skip, step = _delete_skip(facts), STEP_DELETE
        elif action == JobAction.CONVERT:
            skip, step = _convert_skip(facts), STEP_LINK
        elif action == JobAction.REMINDERS:
            skip, step = _remind_skip(facts, channel), STEP_REMIND
        else:
            skip, step = _sync_skip(facts), STEP_UPDATE
        plan.rows.append(
            PlanRow(
                user_id=facts["pk"],
                label=_label(facts),
                vpp_user_id=facts["vpp_user__pk"],
                vpp_status=facts["vpp_user__status"] or "",
                step="" if skip else step,
                skip_reason=skip,
                silent=silent and not skip,
            )
        )
    return plan
