from django.db import migrations

# Postgres only. users_user's name index carries search_text so that SQLite can search in
# name order without touching the table; on Postgres the trigram index serves search, and
# that wide index makes a deep page (OFFSET 75,000) read ~10 MB. A narrow twin keeps the
# index-only walk small; the planner picks it by size.
SQL = [
    "CREATE INDEX IF NOT EXISTS user_name_narrow_idx ON users_user (display_name, id)",
    "CREATE INDEX IF NOT EXISTS user_active_narrow_idx ON users_user (display_name, id) "
    "WHERE has_activated_apple_device",
]


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for sql in SQL:
            schema_editor.execute(sql)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS user_name_narrow_idx")
        schema_editor.execute("DROP INDEX IF EXISTS user_active_narrow_idx")


class Migration(migrations.Migration):
    dependencies = [("users", "0002_device_summary_search")]
    operations = [migrations.RunPython(create, drop)]
