from vpp.models.setting import AssignmentMethod, InvitationChannel, TokenHealth, VppServerSetting

__all__ = ["AssignmentMethod", "InvitationChannel", "TokenHealth", "VppServerSetting"]
