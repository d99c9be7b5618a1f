from vpp.models.notification import AppleNotification, NotificationType
from vpp.models.schedule import ScheduleMode, SyncResult, SyncSchedule
from vpp.models.setting import AssignmentMethod, InvitationChannel, TokenHealth, VppServerSetting

__all__ = [
    "AppleNotification",
    "AssignmentMethod",
    "InvitationChannel",
    "NotificationType",
    "ScheduleMode",
    "SyncResult",
    "SyncSchedule",
    "TokenHealth",
    "VppServerSetting",
]
