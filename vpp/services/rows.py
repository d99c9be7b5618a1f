"""Fast per-row updates for thousands of rows (Django's bulk_update builds one huge CASE per field).

One parameterised ``UPDATE … WHERE id = %s`` run with ``executemany``: fast on SQLite and on
Postgres (psycopg pipelines it), and the write transaction stays milliseconds long, so a
worker never holds SQLite's write lock while another process waits for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from django.db import connection, transaction
from django.db.models import Model
from django.utils import timezone


def rows_update(objs: Sequence[Model], fields: Iterable[str], *, batch_size: int = 1000) -> int:
    """Save ``fields`` of each object (and ``updated_at`` if the model has it)."""
    if not objs:
        return 0
    model = type(objs[0])
    meta = model._meta
    names = list(fields)
    if any(f.name == "updated_at" for f in meta.concrete_fields) and "updated_at" not in names:
        now = timezone.now()
        for obj in objs:
            obj.updated_at = now
        names.append("updated_at")
    model_fields = [meta.get_field(name) for name in names]
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(field.column)} = %s" for field in model_fields)
    sql = f"UPDATE {quote(meta.db_table)} SET {assignments} WHERE {quote(meta.pk.column)} = %s"  # noqa: S608
    params = [
        [field.get_db_prep_save(getattr(obj, field.attname), connection) for field in model_fields] + [obj.pk]
        for obj in objs
    ]
    for start in range(0, len(params), batch_size):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.executemany(sql, params[start : start + batch_size])
    return len(params)
