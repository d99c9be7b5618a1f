"""The built-in roles (Viewer, Operator, Administrator) in the test database, and admins holding them.

ensure_roles()                      the groups exactly as accounts/migrations/0002_builtin_roles.py
                                    makes them (transactional tests flush them away; this restores them)
make_admin("vera", role="Viewer")   an active auth.User in that role group (password: ADMIN_PASSWORD)
"""

from __future__ import annotations

import importlib

from django.apps import apps
from django.contrib.auth.models import Group, User

ADMIN_PASSWORD = "role-test-password-1"
_migration = importlib.import_module("accounts.migrations.0002_builtin_roles")


def ensure_roles() -> None:
    _migration.create_roles(apps)


def make_admin(username: str, *, role: str | None, email: str = "", active: bool = True, **fields) -> User:
    ensure_roles()
    user = User.objects.create_user(username, email=email or f"{username}@example.com", password=ADMIN_PASSWORD)
    if role:
        user.groups.add(Group.objects.get(name=role))
    if not active or fields:
        for name, value in {"is_active": active, **fields}.items():
            setattr(user, name, value)
        user.save()
    return user
