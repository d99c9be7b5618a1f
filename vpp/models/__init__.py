from vpp.models.audit import AuditEvent
from vpp.models.job import (
    FINISHED_JOB_STATUSES,
    OPEN_ITEM_STATUSES,
    ItemStatus,
    Job,
    JobAction,
    JobItem,
    JobStatus,
)
from vpp.models.setting import AssignmentMethod, InvitationChannel, TokenHealth, VppServerSetting
from vpp.models.vpp_user import InvitationDelivery, VppUser, VppUserStatus

__all__ = [
    "FINISHED_JOB_STATUSES",
    "OPEN_ITEM_STATUSES",
    "AssignmentMethod",
    "AuditEvent",
    "InvitationChannel",
    "InvitationDelivery",
    "ItemStatus",
    "Job",
    "JobAction",
    "JobItem",
    "JobStatus",
    "TokenHealth",
    "VppServerSetting",
    "VppUser",
    "VppUserStatus",
]
