"""Rows that exist once (pk=1): the VPP server setting and the sync schedule."""

from __future__ import annotations

from typing import Self


class SingletonRow:
    """Mixin for a model with exactly one row, created on first use."""

    @classmethod
    def load(cls) -> Self:
        obj = cls.objects.filter(pk=1).first()
        if obj is None:
            # INSERT ... ON CONFLICT DO NOTHING: concurrent first callers neither fail nor
            # break an enclosing transaction (get_or_create's IntegrityError would).
            cls.objects.bulk_create([cls(pk=1)], ignore_conflicts=True)
            obj = cls.objects.get(pk=1)
        return obj

    @classmethod
    def load_for_update(cls) -> Self:
        """The row, locked (SELECT ... FOR UPDATE) until the caller's transaction ends; created if missing.

        Call inside ``transaction.atomic()``: the values read are the ones the caller overwrites.
        """
        cls.load()
        return cls.objects.select_for_update().get(pk=1)
