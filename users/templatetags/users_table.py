"""{% user_rows page.rows %}: the Users table's body rows (built in users/table.py)."""

from django import template

from users.table import user_rows_html

register = template.Library()
register.simple_tag(user_rows_html, name="user_rows")
