import importlib

import django.db.models.functions.text
from django.db import migrations, models

# The FTS5 triggers of 0004 (SQLite): AddField rebuilds users_user there, which drops them.
_fts = importlib.import_module("users.migrations.0004_sqlite_search_fts")


def restore_sqlite_search(apps, schema_editor):
    """Re-create the SQLite FTS triggers (and rebuild the index) after the table rebuild."""
    _fts.create(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [
        ("users", "0004_sqlite_search_fts"),
    ]

    operations = [
        migrations.AddField(
            model_name="user",
            name="managed_apple_account",
            field=models.CharField(
                blank=True,
                help_text="The person's Managed Apple Account, e.g. jane@corp.example. Leave empty for none.",
                max_length=254,
                verbose_name="Managed Apple Account",
            ),
        ),
        migrations.AddConstraint(
            model_name="user",
            constraint=models.UniqueConstraint(
                django.db.models.functions.text.Lower("managed_apple_account"),
                condition=models.Q(("is_active", True), models.Q(("managed_apple_account", ""), _negated=True)),
                name="user_managed_apple_account_active_uniq",
                violation_error_message="Another active user already has this Managed Apple Account.",
            ),
        ),
        # No existing user has an account yet, so search_text needs no rewrite.
        migrations.RunPython(restore_sqlite_search, migrations.RunPython.noop),
    ]
