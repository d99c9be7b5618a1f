"""Forms of the VPP Server Setting page (write-only for secrets: they are never rendered back)."""

from __future__ import annotations

from functools import partial
from urllib.parse import urlsplit

from django import forms
from django.core.exceptions import ValidationError

from vpp.invitations.email import sender_check
from vpp.invitations.message import TemplateError, body_check, template_check
from vpp.models import ScheduleMode, VppServerSetting
from vpp.services.schedule import timezone_choices
from vpp.services.setting import MAX_TOKEN_BYTES


class SecretTextarea(forms.Textarea):
    """A textarea for a secret: what was typed is never rendered back (e.g. after a rejected upload)."""

    def format_value(self, value):
        return None


class TokenUploadForm(forms.Form):
    token_file = forms.FileField(label="Content token file (.vpptoken)", required=False)
    token_text = forms.CharField(
        label="…or paste the token text",
        required=False,
        widget=SecretTextarea(attrs={"rows": 3, "autocomplete": "off", "spellcheck": "false"}),
    )

    def clean(self):
        data = super().clean()
        upload, text = data.get("token_file"), (data.get("token_text") or "").strip()
        if not upload and not text:
            raise ValidationError("Choose a .vpptoken file or paste its text.")
        if upload:
            # Never read more than a token can be; the parser refuses anything over the cap.
            data["token_data"] = upload.read(MAX_TOKEN_BYTES + 1)
        else:
            data["token_data"] = text
        return data


class TakeoverForm(forms.Form):
    understood = forms.BooleanField(
        required=True,
        label="I understand: the other MDM loses this location; its licence assignments may stop "
        "working, and it must no longer use this token.",
    )


class UnitChangeForm(forms.Form):
    understood = forms.BooleanField(
        required=True,
        label="I understand: this is another organizational unit, not a renewal. The VPP users of the current "
        "unit stop being VPP users here (kept in their history).",
    )


class AssignmentForm(forms.ModelForm):
    class Meta:
        model = VppServerSetting
        fields = ["assignment_method"]
        widgets = {"assignment_method": forms.RadioSelect}


class InvitationForm(forms.ModelForm):
    class Meta:
        model = VppServerSetting
        fields = [
            "invitation_channel",
            "invitation_sender",
            "invitation_subject",
            "invitation_body_text",
            "invitation_body_html",
        ]
        labels = {
            "invitation_channel": "Channel",
            "invitation_sender": "Sender (From)",
            "invitation_subject": "Subject",
            "invitation_body_text": "Body (plain text)",
            "invitation_body_html": "Body (HTML, optional)",
        }
        widgets = {
            "invitation_channel": forms.RadioSelect,
            "invitation_body_text": forms.Textarea(attrs={"rows": 6}),
            "invitation_body_html": forms.Textarea(attrs={"rows": 6}),
        }

    def _check(self, field: str, check=template_check) -> str:
        value = self.cleaned_data.get(field) or ""
        try:
            check(value)
        except TemplateError as exc:
            raise ValidationError(str(exc)) from None
        return value

    def clean_invitation_subject(self):
        return self._check("invitation_subject")

    def clean_invitation_body_text(self):
        return self._check("invitation_body_text", body_check)

    def clean_invitation_body_html(self):
        return self._check("invitation_body_html", partial(body_check, required=False))

    def clean_invitation_sender(self):
        try:
            return sender_check(self.cleaned_data.get("invitation_sender") or "")
        except ValueError as exc:
            raise ValidationError(str(exc)) from None


class ScheduleForm(forms.Form):
    enabled = forms.BooleanField(label="Sync automatically", required=False)
    mode = forms.ChoiceField(choices=ScheduleMode.choices, widget=forms.RadioSelect, label="When")
    interval_hours = forms.IntegerField(label="Every (hours)", min_value=1, max_value=168)
    time_of_day = forms.TimeField(label="Daily at", widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"))
    timezone = forms.ChoiceField(label="Time zone")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["timezone"].choices = [(name, name) for name in timezone_choices()]


class NotificationsForm(forms.Form):
    public_url = forms.URLField(
        label="Public HTTPS address of this console",
        assume_scheme="https",
        help_text="Apple posts notifications to this address + /vpp/notifications/. It must be reachable "
        "from the internet.",
    )

    def clean_public_url(self):
        value = self.cleaned_data["public_url"]
        host = urlsplit(value).hostname or ""
        # Plain http only for a console on this machine (the demo with the local sandbox).
        if not value.startswith("https://") and host not in ("127.0.0.1", "localhost", "::1"):
            raise ValidationError("Apple only delivers notifications to HTTPS addresses.")
        return value
