"""Users page forms: the filter (GET) and the row selection a bulk action posts."""

from __future__ import annotations

from django import forms
from django.db.models import QuerySet

from users.models import User
from users.selectors import (
    DEFAULT_PAGE_SIZE,
    DEFAULT_SORT,
    EXTRA_FILTERS,
    PAGE_SIZES,
    PLATFORM_CHOICES,
    SORTS,
    UserFilters,
    UserSelection,
)

ACTIVATED_CHOICES = [
    ("", "Activated iOS/macOS: any"),
    ("yes", "Activated iOS/macOS: yes"),
    ("no", "Activated iOS/macOS: no"),
]


class UserFilterForm(forms.Form):
    """The Users page query string. Bad values fall back to defaults instead of erroring:
    a hand-edited or stale URL still shows a page.

    Besides the fields below, one choice field per filter another app registered
    (``users.selectors.register_filter``, e.g. the vpp app's ``vpp_status``).
    """

    q = forms.CharField(required=False, max_length=200, strip=True)
    platform = forms.ChoiceField(required=False, choices=[("", "All platforms"), *PLATFORM_CHOICES])
    activated = forms.ChoiceField(required=False, choices=ACTIVATED_CHOICES)
    sort = forms.ChoiceField(required=False, choices=[(key, key) for key in SORTS])
    page = forms.IntegerField(required=False, min_value=1)
    size = forms.TypedChoiceField(required=False, coerce=int, choices=[(n, n) for n in PAGE_SIZES])

    def __init__(self, data=None, **kwargs):
        super().__init__(data if data is not None else {}, **kwargs)
        self._add_extra_filters()
        self.is_valid()  # fills cleaned_data for the valid fields; invalid ones use defaults

    def _add_extra_filters(self) -> None:
        for extra in EXTRA_FILTERS.values():
            self.fields[extra.name] = forms.ChoiceField(required=False, choices=extra.options)

    def _value(self, name: str, default):
        value = self.cleaned_data.get(name) if name not in self.errors else None
        return default if value in (None, "") else value

    def filters(self) -> UserFilters:
        activated = self._value("activated", "")
        return UserFilters(
            q=self._value("q", ""),
            platform=self._value("platform", ""),
            activated=None if not activated else activated == "yes",
            extra=tuple((name, value) for name in EXTRA_FILTERS if (value := self._value(name, ""))),
        )

    @property
    def sort_key(self) -> str:
        return self._value("sort", DEFAULT_SORT)

    @property
    def page_number(self) -> int:
        return self._value("page", 1)

    @property
    def page_size(self) -> int:
        return self._value("size", DEFAULT_PAGE_SIZE)


class UserSelectionForm(UserFilterForm):
    """What a bulk action posts: ticked ``pk`` values, or ``select_all=1`` plus the filter.

    "Select all N matching" re-applies the filter on the server (never a list of 100,000
    ids in the POST). ``selection()`` is what was chosen (a ``users.selectors.UserSelection``,
    what a job records), ``selected_users()`` its rows.
    """

    pk = forms.TypedMultipleChoiceField(required=False, coerce=int)
    select_all = forms.BooleanField(required=False)

    def __init__(self, data=None, **kwargs):
        forms.Form.__init__(self, data if data is not None else {}, **kwargs)
        self._add_extra_filters()
        # Any integer is a valid choice here; unknown ids simply select nothing.
        self.fields["pk"].valid_value = lambda value: str(value).isdigit()
        self.is_valid()

    def clean(self):
        cleaned = super().clean()
        if not cleaned.get("select_all") and not cleaned.get("pk"):
            raise forms.ValidationError("Select at least one user.", code="empty")
        return cleaned

    @property
    def selects_all(self) -> bool:
        return bool(self.cleaned_data.get("select_all")) if "select_all" not in self.errors else False

    def selection(self) -> UserSelection:
        if self.selects_all:
            return UserSelection(all_matching=True, filters=self.filters())
        ids = [] if "pk" in self.errors else self.cleaned_data.get("pk") or []
        return UserSelection(ids=tuple(sorted(set(ids))))

    def selected_users(self) -> QuerySet[User]:
        return self.selection().users()
