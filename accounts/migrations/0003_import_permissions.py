"""The Administrator role may import device users from CSV (users.add_user and users.change_user,
checked by users/import_views.py; docs/roles.md, docs/import.md)."""

import importlib

from django.db import migrations

ADDED = {"Administrator": ["users.add_user", "users.change_user"]}


def add(apps, schema_editor=None):
    builtin = importlib.import_module("accounts.migrations.0002_builtin_roles")
    builtin.create_roles(apps)  # makes sure the permissions exist (a new database), as 0002 does
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, perms in ADDED.items():
        group, _ = Group.objects.get_or_create(name=name)
        for perm in perms:
            app_label, codename = perm.split(".")
            group.permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))


def remove(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    for name, perms in ADDED.items():
        group = Group.objects.filter(name=name).first()
        if group:
            codenames = [perm.split(".")[1] for perm in perms]
            group.permissions.remove(*group.permissions.filter(content_type__app_label="users", codename__in=codenames))


class Migration(migrations.Migration):
    dependencies = [("accounts", "0002_builtin_roles"), ("users", "0007_user_import")]

    operations = [migrations.RunPython(add, remove)]
