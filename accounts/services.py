"""What Setting › Administrators does: add an admin, assign a role, deactivate or reactivate.

Every change is an audit event (``vpp.audit.audit_record``, actions ``accounts.*``) and keeps at
least one active Administrator (superusers do not count: they are the Django admin's emergency
accounts, and a deployment may have none).
Refusals raise ``AdminChangeRefused`` with a sentence for the admin; nothing changes then.
The roles are described in docs/roles.md.
"""

from __future__ import annotations

from django.contrib.auth.models import Group, User
from django.db import transaction

from accounts.roles import ADMINISTRATOR, ROLES, role_of
from vpp.audit import audit_record
from vpp.services import Refused


class AdminChangeRefused(Refused):
    """The change would lock the console out, touch the acting admin's own account, or a superuser."""


def _active_administrators():
    return User.objects.filter(is_active=True, groups__name=ADMINISTRATOR)


def _check_change(*, user: User, actor, removes_administrator: bool, what: str) -> None:
    if user.pk == actor.pk:
        raise AdminChangeRefused(f"You cannot {what} your own account: ask another Administrator.")
    if user.is_superuser:
        raise AdminChangeRefused(f"{user.get_username()} is a superuser: manage superusers in the Django admin.")
    if not removes_administrator or not user.is_active or role_of(user) != ADMINISTRATOR:
        return
    # Lock the Administrators' rows and group memberships (no DISTINCT, no ``of``: Postgres then
    # re-checks a membership another transaction removed meanwhile), so two Administrators
    # demoting each other at the same moment cannot both succeed.
    remaining = _active_administrators().select_for_update().exclude(pk=user.pk).order_by("pk")
    if not list(remaining):
        raise AdminChangeRefused(
            f"{user.get_username()} is the last active Administrator: make someone else an Administrator first."
        )


def _set_role(user: User, role: str) -> None:
    user.groups.remove(*Group.objects.filter(name__in=ROLES).exclude(name=role))
    user.groups.add(Group.objects.get(name=role))


def admin_create(*, username: str, email: str, password: str, role: str, actor, ip: str | None = None) -> User:
    """Create an active admin account with ``role`` (a ``ROLES`` key) and a validated password.

    The caller has validated the username and password (``accounts.forms.AdminAddForm``).
    Audited as ``accounts.admin_added``.
    """
    if role not in ROLES:
        raise AdminChangeRefused(f"Unknown role {role!r}.")
    with transaction.atomic():
        user = User.objects.create_user(username=username, email=email, password=password)
        _set_role(user, role)
        audit_record(actor=actor, action="accounts.admin_added", details={"admin": username, "role": role}, ip=ip)
    return user


def admin_role_set(*, user: User, role: str, actor, ip: str | None = None) -> bool:
    """Give ``user`` the one role ``role``; False when it already had it (nothing recorded).

    Refuses (``AdminChangeRefused``) the acting admin's own account, superusers, and demoting
    the last active Administrator. Audited as ``accounts.role_changed``.
    """
    if role not in ROLES:
        raise AdminChangeRefused(f"Unknown role {role!r}.")
    with transaction.atomic():
        before = role_of(user)
        if before == role:
            return False
        _check_change(user=user, actor=actor, removes_administrator=role != ADMINISTRATOR, what="change the role of")
        _set_role(user, role)
        audit_record(
            actor=actor,
            action="accounts.role_changed",
            details={"admin": user.get_username(), "from": before or "none", "to": role},
            ip=ip,
        )
    return True


def admin_active_set(*, user: User, active: bool, actor, ip: str | None = None) -> bool:
    """Deactivate (``active=False``) or reactivate an admin account; False when nothing changed.

    A deactivated admin cannot log in and its open sessions stop working (Django's ModelBackend
    refuses inactive users). Refuses the acting admin's own account, superusers, and the last
    active Administrator. Audited as ``accounts.admin_deactivated`` / ``accounts.admin_reactivated``.
    """
    with transaction.atomic():
        if user.is_active == active:
            return False
        _check_change(user=user, actor=actor, removes_administrator=not active, what="deactivate")
        user.is_active = active
        user.save(update_fields=["is_active"])
        action = "accounts.admin_reactivated" if active else "accounts.admin_deactivated"
        audit_record(actor=actor, action=action, details={"admin": user.get_username()}, ip=ip)
    return True
