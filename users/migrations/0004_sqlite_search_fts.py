from django.db import migrations

# SQLite only: a trigram full-text index over users_user.search_text, so the Users page
# search (every word as a substring) and its COUNT are index lookups instead of a LIKE over
# every row (~20 ms at 100,000 users). Postgres has its pg_trgm index (0002).
#
# The index is an external-content FTS5 table kept current by triggers. Django rebuilds a
# SQLite table for many ALTERs (copy, drop, rename), which drops these triggers: a later
# migration that changes users_user must run CREATE_TRIGGERS again (tests/users catch it:
# they search for users created and renamed after migrating).
CREATE_TABLE = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS users_user_fts USING fts5("
    "search_text, content='users_user', content_rowid='id', tokenize='trigram')"
)
CREATE_TRIGGERS = [
    """CREATE TRIGGER IF NOT EXISTS users_user_fts_insert AFTER INSERT ON users_user BEGIN
         INSERT INTO users_user_fts (rowid, search_text) VALUES (new.id, new.search_text);
       END""",
    """CREATE TRIGGER IF NOT EXISTS users_user_fts_delete AFTER DELETE ON users_user BEGIN
         INSERT INTO users_user_fts (users_user_fts, rowid, search_text) VALUES ('delete', old.id, old.search_text);
       END""",
    """CREATE TRIGGER IF NOT EXISTS users_user_fts_update AFTER UPDATE OF search_text ON users_user BEGIN
         INSERT INTO users_user_fts (users_user_fts, rowid, search_text) VALUES ('delete', old.id, old.search_text);
         INSERT INTO users_user_fts (rowid, search_text) VALUES (new.id, new.search_text);
       END""",
]
REBUILD = "INSERT INTO users_user_fts (users_user_fts) VALUES ('rebuild')"


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "sqlite":
        return
    schema_editor.execute(CREATE_TABLE)
    for sql in CREATE_TRIGGERS:
        schema_editor.execute(sql)
    schema_editor.execute(REBUILD)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "sqlite":
        return
    for name in ("insert", "delete", "update"):
        schema_editor.execute(f"DROP TRIGGER IF EXISTS users_user_fts_{name}")
    schema_editor.execute("DROP TABLE IF EXISTS users_user_fts")


class Migration(migrations.Migration):
    dependencies = [("users", "0003_postgres_narrow_name_index")]
    operations = [migrations.RunPython(create, drop)]
