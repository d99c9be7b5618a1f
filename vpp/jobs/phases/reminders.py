"""A round of invitation reminders: the invitation link again, for users who have not accepted.

Started by the beat tick (vpp/services/reminders.py decides who is due). Each user's item is
checked again just before sending: a user who became Associated meanwhile (Apple's
USER_ASSOCIATED notification or a sync) gets no reminder. The message goes out through the
invite phase's delivery (vpp/jobs/phases/invite.py): an ``InvitationDelivery`` row per user,
channel and job makes a redelivered task send nothing twice in one round.

Channel: the configured invitation channel; with escalation (VPP Server Setting), the first
reminder goes by push notification and later ones by email (a user push cannot reach gets email).
"""

from __future__ import annotations

from vpp.apple.client import VppClient
from vpp.invitations.channels import channels_for
from vpp.jobs.items import item_succeed
from vpp.jobs.phases.invite import deliver_invitations
from vpp.models import InvitationChannel, Job, JobItem, VppServerSetting, VppUser, VppUserStatus


def reminder_channel(item: JobItem, setting: VppServerSetting, default: str) -> str:
    """The channel of this user's next reminder (an InvitationChannel value)."""
    if not setting.reminder_escalate:
        return default
    if item.vpp_user.reminders_sent == 0 and any(c.can_reach(item.user) for c in channels_for(InvitationChannel.PUSH)):
        return InvitationChannel.PUSH
    return InvitationChannel.EMAIL


def remind_phase(*, job: Job, items: list[JobItem], client: VppClient, token: str) -> None:
    """Send each still-invited user its reminder; users associated meanwhile succeed without one."""
    fresh = dict(VppUser.objects.filter(pk__in=[item.vpp_user_id for item in items]).values_list("pk", "status"))
    stopped = [item for item in items if fresh.get(item.vpp_user_id) != VppUserStatus.INVITED]
    for status in {fresh.get(item.vpp_user_id) for item in stopped}:
        note = (
            "Associated meanwhile; no reminder sent."
            if status == VppUserStatus.ASSOCIATED
            else "No longer waiting for acceptance; no reminder sent."
        )
        item_succeed([item for item in stopped if fresh.get(item.vpp_user_id) == status], note)
    setting = VppServerSetting.load()
    by_channel: dict[str, list[JobItem]] = {}
    for item in items:
        if item in stopped or item.user is None:
            continue
        channel = reminder_channel(item, setting, job.channel)
        number = item.vpp_user.reminders_sent + 1
        item.reason = f"Reminder {number} of {setting.reminder_max} sent ({InvitationChannel(channel).label.lower()})."
        by_channel.setdefault(channel, []).append(item)
    for channel, group in by_channel.items():
        deliver_invitations(job=job, items=group, client=client, channel=channel)
