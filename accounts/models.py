"""Console administrators are Django ``auth.User`` accounts; their role is a Django Group (docs/roles.md)."""

from __future__ import annotations

from django.contrib.auth.models import User


class Administrator(User):
    """A proxy of ``auth.User``: no table, only the permission that gates Setting › Administrators."""

    class Meta:
        proxy = True
        default_permissions = ()
        permissions = [("manage_administrators", "Can add administrators, assign their role and deactivate them")]
        verbose_name = "administrator"
