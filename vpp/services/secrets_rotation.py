"""Re-encrypt every stored secret under the newest key (``manage.py rotate_secrets``)."""

from __future__ import annotations

from dataclasses import dataclass

from django.apps import apps
from django.db import transaction

from vpp import secrets as vault

# (app_label.Model, field) of every encrypted column; other parts add theirs here.
ENCRYPTED_FIELDS: list[tuple[str, str]] = [
    ("vpp.VppServerSetting", "content_token_encrypted"),
    ("vpp.VppServerSetting", "notification_auth_token_encrypted"),
]


@dataclass(frozen=True)
class RotationReport:
    rotated: int
    unreadable: list[str]


def secrets_rotate() -> RotationReport:
    """Re-encrypt every value of ``ENCRYPTED_FIELDS`` under the first configured key.

    All or nothing: one unreadable value (wrong keys) rolls everything back. Returns a
    ``RotationReport``: ``rotated``, the number of values rewritten (0 after a roll-back), and
    ``unreadable``, one ``"app.Model.field pk=N"`` per value no configured key decrypts. Values
    are never logged or returned.
    """
    rotated, unreadable = 0, []
    with transaction.atomic():
        for model_label, field in _fields():
            model = apps.get_model(model_label)
            for pk, value in model.objects.exclude(**{field: ""}).values_list("pk", field).iterator():
                try:
                    new = vault.rotate(value)
                except vault.SecretUnreadable:
                    unreadable.append(f"{model_label}.{field} pk={pk}")
                    continue
                rotated += model.objects.filter(pk=pk, **{field: value}).update(**{field: new})
        if unreadable:
            transaction.set_rollback(True)
            rotated = 0
    return RotationReport(rotated, unreadable)


def _fields():
    for model_label, field in ENCRYPTED_FIELDS:
        try:
            apps.get_model(model_label)
        except LookupError:
            continue
        yield model_label, field
