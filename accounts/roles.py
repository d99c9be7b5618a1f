"""The console's built-in roles: Django Groups with the permissions the views check (docs/roles.md).

Each admin account holds at most one of these groups. Superusers hold every permission and are
managed in the Django admin, not on Setting › Administrators. The groups are created by the
migration ``accounts/migrations/0002_builtin_roles.py``, which keeps a frozen copy of ``ROLES``;
``tests/kmconsole/test_roles.py`` checks that both agree with the permissions the views check.
"""

from __future__ import annotations

from django.db import models

VIEWER = "Viewer"
OPERATOR = "Operator"
ADMINISTRATOR = "Administrator"

MANAGE_PERM = "accounts.manage_administrators"

_VIEW = (
    "users.view_user",
    "vpp.view_vppuser",
    "vpp.view_job",
    "vpp.view_vppserversetting",
)
_OPERATE = ("vpp.invite_vppuser", "vpp.sync_vppuser")
_ADMINISTER = ("vpp.delete_vppuser", "vpp.change_vppserversetting", MANAGE_PERM)

# Role name -> "app_label.codename" permissions, from least to most.
ROLES: dict[str, frozenset[str]] = {
    VIEWER: frozenset(_VIEW),
    OPERATOR: frozenset(_VIEW + _OPERATE),
    ADMINISTRATOR: frozenset(_VIEW + _OPERATE + _ADMINISTER),
}


class Role(models.TextChoices):
    """The roles an Administrator can assign on Setting › Administrators."""

    VIEWER = VIEWER, "Viewer: sees users, jobs and settings"
    OPERATOR = OPERATOR, "Operator: also invites and syncs"
    ADMINISTRATOR = ADMINISTRATOR, "Administrator: also deletes from VPP, changes settings and administrators"


def role_of(user) -> str:
    """The role name of ``user``: "Superuser", one of ``ROLES`` or "" (no role: sees the pages only).

    Reads the prefetched ``groups`` when there are any (the Administrators page prefetches them).
    """
    if user.is_superuser:
        return "Superuser"
    names = {group.name for group in user.groups.all()}
    for name in reversed(ROLES):  # the strongest role wins should an account hold two
        if name in names:
            return name
    return ""
