"""The built-in roles: the migration creates them, and each grants exactly what the views check."""

from __future__ import annotations

import importlib

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command

from accounts.roles import ADMINISTRATOR, MANAGE_PERM, OPERATOR, ROLES, VIEWER
from tests.support.roles import make_admin
from tests.support.users import make_user
from tests.vpp.conftest import token_setting  # noqa: F401 - the fixture
from vpp.bulk_views import ORPHANS_PERMISSION, PERMISSIONS
from vpp.models import JobAction
from vpp.views import CHANGE_PERM

MIGRATION = importlib.import_module("accounts.migrations.0002_builtin_roles")
# Every permission a console view checks today (vpp/bulk_views.py, vpp/views.py, accounts/views.py).
CHECKED = {*PERMISSIONS.values(), ORPHANS_PERMISSION, CHANGE_PERM, MANAGE_PERM}


def group_perms(name: str) -> set[str]:
    group = Group.objects.get(name=name)
    return {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")}


@pytest.mark.django_db(transaction=True)
def test_the_migration_creates_the_roles_with_their_permissions():
    call_command("migrate", "accounts", "0001", verbosity=0)
    assert not Group.objects.filter(name__in=ROLES).exists()
    # As on a new database: Django creates permissions only after the last migration.
    Permission.objects.filter(content_type__app_label__in=["users", "vpp", "accounts"]).delete()

    call_command("migrate", "accounts", verbosity=0)

    assert {name: group_perms(name) for name in ROLES} == ROLES
    assert {name: set(perms) for name, perms in MIGRATION.ROLES.items()} == ROLES  # the frozen copy


def test_each_role_holds_exactly_the_checked_permissions_it_should():
    assert ROLES[VIEWER] & CHECKED == set()
    assert ROLES[OPERATOR] & CHECKED == {PERMISSIONS[JobAction.INVITE], PERMISSIONS[JobAction.SYNC]}
    assert ROLES[ADMINISTRATOR] >= CHECKED
    assert ROLES[VIEWER] < ROLES[OPERATOR] < ROLES[ADMINISTRATOR]


def confirm(client, action: str, pk: int) -> int:
    return client.post(f"/vpp/bulk/{action}/confirm/", {"pk": [pk]}, HTTP_HX_REQUEST="true").status_code


def change_setting(client) -> int:
    data = {"section": "assignment", "assignment_method": "user"}
    return client.post("/setting/ios-macos/vpp-server/", data).status_code


@pytest.mark.django_db
@pytest.mark.usefixtures("token_setting")
@pytest.mark.parametrize(
    ("role", "invite", "sync", "delete", "setting", "administrators"),
    [
        (VIEWER, 403, 403, 403, 403, 403),
        (OPERATOR, 200, 200, 403, 403, 403),
        (ADMINISTRATOR, 200, 200, 200, 302, 200),
    ],
)
def test_the_views_let_each_role_do_what_it_holds(client, role, invite, sync, delete, setting, administrators):
    user = make_user()
    client.force_login(make_admin("someone", role=role))
    assert client.get("/users/").status_code == 200  # every role sees the console
    assert confirm(client, "invite", user.pk) == invite
    assert confirm(client, "sync", user.pk) == sync
    assert confirm(client, "delete", user.pk) == delete
    assert change_setting(client) == setting
    assert client.get("/setting/administrators/").status_code == administrators
