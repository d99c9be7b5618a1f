from vpp.models.alerts import AlertSetting
from vpp.models.audit import AuditEvent
from vpp.models.business import AppleBusinessSetting
from vpp.models.job import (
    FINISHED_JOB_STATUSES,
    OPEN_ITEM_STATUSES,
    ItemStatus,
    Job,
    JobAction,
    JobItem,
    JobStatus,
)
from vpp.models.notification import AppleNotification, NotificationType
from vpp.models.schedule import ScheduleMode, SyncResult, SyncSchedule
from vpp.models.setting import AssignmentMethod, InvitationChannel, TokenHealth, VppServerSetting
from vpp.models.sync import SyncOrphan, SyncRun
from vpp.models.vpp_user import ACTIVE_VPP_STATUSES, InvitationDelivery, VppUser, VppUserStatus

__all__ = [
    "ACTIVE_VPP_STATUSES",
    "FINISHED_JOB_STATUSES",
    "OPEN_ITEM_STATUSES",
    "AlertSetting",
    "AppleBusinessSetting",
    "AppleNotification",
    "AssignmentMethod",
    "AuditEvent",
    "InvitationChannel",
    "InvitationDelivery",
    "ItemStatus",
    "Job",
    "JobAction",
    "JobItem",
    "JobStatus",
    "NotificationType",
    "ScheduleMode",
    "SyncOrphan",
    "SyncResult",
    "SyncRun",
    "SyncSchedule",
    "TokenHealth",
    "VppServerSetting",
    "VppUser",
    "VppUserStatus",
]
