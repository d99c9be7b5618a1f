"""Columns filled from what outside systems answer: they never fail a write for being too long.

Apple decides how long a location name, an error message, an email or an idHash is; our columns
have a ``max_length``. Postgres refuses a longer value (a 500 mid-upload or mid-job; SQLite
silently stores it) and refuses NUL characters in text. Every column filled from Apple's
answers (or from a mail server's or APNs' error text) is one of the fields below: at every
write — ``save()``, ``bulk_create()``, ``QuerySet.update()`` — the value loses its NULs and is
clipped to ``max_length``, the last character an ellipsis (``clip_text``).

They migrate as plain ``CharField`` / ``EmailField`` (``deconstruct``): the column is the same.
"""

from __future__ import annotations

from django.db import models

ELLIPSIS = "…"


def clip_text(value: str, max_length: int | None) -> str:
    """``value`` without NUL characters, at most ``max_length`` characters (the last one "…" if clipped)."""
    value = value.replace("\x00", "")
    if max_length is not None and len(value) > max_length:
        return value[: max_length - 1] + ELLIPSIS
    return value


class _Clipped:
    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        return clip_text(value, self.max_length) if isinstance(value, str) else value

    def deconstruct(self):
        name, _path, args, kwargs = super().deconstruct()
        return name, self._migrates_as, args, kwargs


class OutsideCharField(_Clipped, models.CharField):
    """A CharField filled from an outside system's answer (Apple, the mail server, APNs): clipped, never refused."""

    _migrates_as = "django.db.models.CharField"


class OutsideEmailField(_Clipped, models.EmailField):
    """An EmailField filled from Apple's answer: clipped, never refused."""

    _migrates_as = "django.db.models.EmailField"
