"""The jobs' bulk row writes: kmconsole/rows.py (shared with users/, which may not import vpp)."""

from kmconsole.rows import rows_insert, rows_update

__all__ = ["rows_insert", "rows_update"]
