"""Forms of the VPP Server Setting page (write-only for secrets: they are never rendered back)."""

from __future__ import annotations

import datetime as dt
from functools import partial
from urllib.parse import urlsplit

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone

from vpp.invitations.email import sender_check
from vpp.invitations.message import TemplateError, body_check, template_check
from vpp.models import JobAction, ScheduleMode, VppServerSetting
from vpp.selectors import JOB_STATUS_FILTER_CHOICES, SCHEDULE_STARTER
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


class LifecycleForm(forms.ModelForm):
    """Managed Apple Accounts after the scheduled sync, and invitation reminders (VPP Server Setting)."""

    reminder_after_days = forms.IntegerField(label="Remind after (days without acceptance)", min_value=1, max_value=90)
    reminder_max = forms.IntegerField(label="At most (reminders per user)", min_value=1, max_value=10)

    class Meta:
        model = VppServerSetting
        fields = [
            "convert_during_sync",
            "reminders_enabled",
            "reminder_after_days",
            "reminder_max",
            "reminder_escalate",
        ]
        labels = {
            "convert_during_sync": "After each scheduled sync, link invited users who have a Managed Apple Account",
            "reminders_enabled": "Send reminders to users who have not accepted their invitation",
            "reminder_after_days": "Remind after (days without acceptance)",
            "reminder_max": "At most (reminders per user)",
            "reminder_escalate": "Escalate: the first reminder by push notification, later ones by email",
        }


class ScheduleForm(forms.Form):
    """The schedule card. Only the chosen mode's field is editable (console.js disables the other,
    ``data-enabled-when``) and required; a missing value of the other mode keeps the stored one
    (``initial``: the view passes the stored schedule)."""

    enabled = forms.BooleanField(label="Sync automatically", required=False)
    mode = forms.ChoiceField(choices=ScheduleMode.choices, widget=forms.RadioSelect, label="When")
    interval_hours = forms.IntegerField(
        label="Every (hours)",
        min_value=1,
        max_value=168,
        required=False,
        widget=forms.NumberInput(attrs={"data-enabled-when": "mode=interval"}),
    )
    time_of_day = forms.TimeField(
        label="Daily at (24-hour)",
        required=False,
        # Text, not type="time": the browser would show a 12-hour clock in an en-US locale, and every
        # other time in the console is 24-hour.
        widget=forms.TimeInput(
            attrs={
                "data-enabled-when": "mode=daily",
                "placeholder": "HH:MM",
                "pattern": "([01][0-9]|2[0-3]):[0-5][0-9]",
                "inputmode": "numeric",
                "maxlength": "5",
                "title": "24-hour time, e.g. 03:00",
            },
            format="%H:%M",
        ),
    )
    timezone = forms.ChoiceField(label="Time zone")

    MODE_FIELDS = {ScheduleMode.INTERVAL: "interval_hours", ScheduleMode.DAILY: "time_of_day"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["timezone"].choices = [(name, name) for name in timezone_choices()]

    def clean(self):
        data = super().clean()
        for mode, name in self.MODE_FIELDS.items():
            if data.get(name) is not None or name in self.errors:
                continue
            if data.get("mode") == mode:
                self.add_error(name, "This field is required.")
            else:
                data[name] = self.initial.get(name)
        return data


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


class DateRangeFilterForm(forms.Form):
    """A list page's "from"/"to" days (inclusive), read in the console's time zone. Bad values are
    ignored (a hand-edited URL still shows a page); ``bounds()`` is (since, until) as instants."""

    date_from = forms.DateField(label="From", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(label="To", required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, data=None, **kwargs):
        super().__init__(data if data is not None else {}, **kwargs)
        self.is_valid()

    def value(self, name: str):
        return None if name in self.errors else self.cleaned_data.get(name) or None

    def bounds(self) -> tuple[dt.datetime | None, dt.datetime | None]:
        start, end = self.value("date_from"), self.value("date_to")
        zone = timezone.get_current_timezone()
        since = dt.datetime.combine(start, dt.time(), zone) if start else None
        until = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), zone) if end else None
        return since, until

    @property
    def active(self) -> bool:
        return any(self.value(name) for name in self.fields)


class JobFilterForm(DateRangeFilterForm):
    """The jobs list's filters (query string)."""

    field_order = ["action", "status", "started_by", "date_from", "date_to"]

    action = forms.ChoiceField(label="Action", required=False, choices=[("", "All actions"), *JobAction.choices])
    status = forms.ChoiceField(label="Status", required=False, choices=[("", "Any status"), *JOB_STATUS_FILTER_CHOICES])
    started_by = forms.ChoiceField(label="Started by", required=False)

    def __init__(self, data=None, *, starters: list[str], **kwargs):
        forms.Form.__init__(self, data if data is not None else {}, **kwargs)
        self.fields["started_by"].choices = [
            ("", "Anyone"),
            (SCHEDULE_STARTER, "The schedule"),
            *[(name, name) for name in starters],
        ]
        self.is_valid()

    def filters(self) -> dict:
        since, until = self.bounds()
        return {
            "action": self.value("action") or "",
            "status": self.value("status") or "",
            "started_by": self.value("started_by") or "",
            "since": since,
            "until": until,
        }


class AuditFilterForm(DateRangeFilterForm):
    """Setting › Audit log's filters (query string)."""

    field_order = ["actor", "action", "date_from", "date_to"]

    actor = forms.ChoiceField(label="Who", required=False)
    action = forms.ChoiceField(label="What", required=False)

    def __init__(self, data=None, *, actors: list[str], actions: list[tuple[str, str]], **kwargs):
        forms.Form.__init__(self, data if data is not None else {}, **kwargs)
        self.fields["actor"].choices = [("", "Anyone"), *[(name, name) for name in actors]]
        self.fields["action"].choices = [("", "Any action"), *actions]
        self.is_valid()

    def filters(self) -> dict:
        since, until = self.bounds()
        return {
            "actor": self.value("actor") or "",
            "action": self.value("action") or "",
            "since": since,
            "until": until,
        }


class AlertsForm(forms.Form):
    enabled = forms.BooleanField(label="Email the admins before things break", required=False)
    recipients = forms.CharField(
        label="Recipients",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "it-team@example.com"}),
        help_text="One address per line. Blank: every admin with the settings permission who has an email address.",
    )
