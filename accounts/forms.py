"""Forms of Setting › Administrators."""

from __future__ import annotations

from django import forms
from django.contrib.auth.forms import UserCreationForm
from django.contrib.auth.models import User

from accounts.roles import Role


class AdminAddForm(UserCreationForm):
    """A new admin: username (unique, case-insensitive), email, initial password twice, role.

    The password goes through AUTH_PASSWORD_VALIDATORS; the new admin changes it after logging in.
    """

    email = forms.EmailField(required=False)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.VIEWER)

    class Meta(UserCreationForm.Meta):
        model = User
        fields = ("username", "email")


class AdminChangeForm(forms.Form):
    """One change to one listed admin: ``action`` is role / deactivate / reactivate."""

    ACTIONS = ("role", "deactivate", "reactivate")

    action = forms.ChoiceField(choices=[(a, a) for a in ACTIONS])
    user = forms.ModelChoiceField(queryset=User.objects.all(), error_messages={"invalid_choice": "No such admin."})
    role = forms.ChoiceField(choices=Role.choices, required=False)

    def clean(self):
        data = super().clean()
        if data.get("action") == "role" and not data.get("role"):
            self.add_error("role", "Choose a role.")
        return data
