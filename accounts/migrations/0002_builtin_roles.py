"""The built-in roles Viewer, Operator and Administrator as Django Groups (docs/roles.md).

A frozen copy of ``accounts.roles.ROLES`` as it stood when this migration was written; a later
change to the roles is a new migration. Permissions are created first: on a new database Django
would create them only after the last migration (post_migrate).
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

VIEW = ["users.view_user", "vpp.view_vppuser", "vpp.view_job", "vpp.view_vppserversetting"]
OPERATE = ["vpp.invite_vppuser", "vpp.sync_vppuser"]
ADMINISTER = ["vpp.delete_vppuser", "vpp.change_vppserversetting", "accounts.manage_administrators"]
ROLES = {
    "Viewer": VIEW,
    "Operator": VIEW + OPERATE,
    "Administrator": VIEW + OPERATE + ADMINISTER,
}


def create_roles(apps, schema_editor=None):
    for app_config in apps.get_app_configs():
        if app_config.label in {"users", "vpp", "accounts"}:
            models_module = getattr(app_config, "models_module", None)
            # Historical app configs have no models module, without which create_permissions does nothing.
            app_config.models_module = models_module or True
            create_permissions(app_config, apps=apps, verbosity=0)
            app_config.models_module = models_module
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, perms in ROLES.items():
        group, _ = Group.objects.get_or_create(name=name)
        wanted = []
        for perm in perms:
            app_label, codename = perm.split(".")
            wanted.append(Permission.objects.get(content_type__app_label=app_label, codename=codename))
        group.permissions.set(wanted)


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_administrator"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("users", "0004_sqlite_search_fts"),
        ("vpp", "0007_job_phase_claim"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
