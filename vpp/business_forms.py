"""Forms of Setting › Apple Business (the API account and the sync's scope)."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from vpp.forms import SecretTextarea

MAX_KEY_BYTES = 16 * 1024  # a P-256 PEM is ~250 bytes; anything far larger is not a key


class BusinessAccountForm(forms.Form):
    private_key_file = forms.FileField(label="Private key (.pem)", required=False)
    private_key_text = forms.CharField(
        label="…or paste the private key",
        required=False,
        widget=SecretTextarea(attrs={"rows": 3, "autocomplete": "off", "spellcheck": "false"}),
        help_text="Stored encrypted and never shown again. Leave both empty to keep the stored key.",
    )
    client_id = forms.CharField(label="Client ID", max_length=200, help_text="e.g. BUSINESSAPI.3bb3a62b-…")
    key_id = forms.CharField(label="Key ID", max_length=100)

    def clean(self):
        data = super().clean()
        upload, text = data.get("private_key_file"), (data.get("private_key_text") or "").strip()
        if upload:
            raw = upload.read(MAX_KEY_BYTES + 1)
            if len(raw) > MAX_KEY_BYTES:
                raise ValidationError("This file is too large to be an Apple Business private key.")
            data["private_key"] = raw
        else:
            data["private_key"] = text or None
        return data


class BusinessScopeForm(forms.Form):
    groups = forms.MultipleChoiceField(
        label="Only these user groups", required=False, widget=forms.CheckboxSelectMultiple,
        help_text="Leave all unticked to sync everyone.",
    )  # fmt: skip
    on_schedule = forms.BooleanField(
        label="Sync people and devices on the automatic sync's schedule (before the VPP sync)", required=False
    )

    def __init__(self, *args, groups: list[dict], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["groups"].choices = [
            (g["id"], f"{g['name']} ({g.get('type') or 'group'}, {g.get('members') or 0} members)") for g in groups
        ]
