"""Users page forms: the filter (GET) and the row selection a bulk action posts."""

from __future__ import annotations

import re

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

# The largest primary key the database can hold (BigAutoField, a signed 64-bit integer): an id
# above it is not a user, and handing it to the database fails (SQLite: OverflowError).
MAX_PK = 2**63 - 1
_PK_TEXT = re.compile(r"[0-9]{1,19}")

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

    def ignored(self) -> list[str]:
        """The query-string keys whose values were not understood and fell back to their default."""
        return [name for name in self.fields if name in self.errors]

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


def valid_pk(value) -> bool:
    """Whether ``value`` (a posted string) is a user id the database can look up: 1 … MAX_PK, ASCII digits."""
    text = str(value)
    return bool(_PK_TEXT.fullmatch(text)) and 0 < int(text) <= MAX_PK


class UserSelectionForm(UserFilterForm):
    """What a bulk action posts: ticked ``pk`` values, or ``select_all=1`` plus the filter.

    "Select all N matching" re-applies the filter on the server (never a list of 100,000
    ids in the POST). ``selection()`` is what was chosen (a ``users.selectors.UserSelection``,
    what a job records), ``selected_users()`` its rows.

    Unlike the page's query string, a selection never falls back to a default: a filter value
    that does not validate would widen "all matching" to every user. ``problem()`` names what
    was not understood; callers act only when it is "".
    """

    pk = forms.TypedMultipleChoiceField(required=False, coerce=int)
    select_all = forms.BooleanField(required=False)

    def __init__(self, data=None, **kwargs):
        forms.Form.__init__(self, data if data is not None else {}, **kwargs)
        self._add_extra_filters()
        # Any id the database can hold is a valid choice here; unknown ids simply select nothing.
        self.fields["pk"].valid_value = valid_pk
        self.is_valid()

    def clean(self):
        cleaned = super().clean()
        if not cleaned.get("select_all") and not cleaned.get("pk"):
            raise forms.ValidationError("Select at least one user.", code="empty")
        return cleaned

    @property
    def selects_all(self) -> bool:
        return bool(self.cleaned_data.get("select_all")) if "select_all" not in self.errors else False

    def problem(self) -> str:
        """Why this selection cannot be acted on, as a sentence for the admin ("" when it can).

        Ticked ids must all be ids ("1 OR 1=1" is refused, not dropped); with "select all
        matching", every filter field must validate (a search over 200 characters, an unknown
        platform or VPP status).
        """
        if "pk" in self.errors:
            return "The selection was not understood (invalid user ids). Reload the page and try again."
        if self.selects_all:
            bad = [name for name in self.filter_names() if name in self.errors]
            if bad:
                return (
                    f"The filter was not understood ({', '.join(bad)}), so “all matching” cannot be worked out. "
                    "Nothing was selected. Reload the Users page, set the filter again and retry."
                )
        elif not self.cleaned_data.get("pk"):
            return "Select at least one user."
        return ""

    def filter_names(self) -> tuple[str, ...]:
        """The fields that make up the filter "select all matching" re-applies."""
        return ("q", "platform", "activated", *EXTRA_FILTERS)

    def selection(self) -> UserSelection:
        """The selection posted. Raises ValueError when ``problem()`` is not "" (never a wider one)."""
        problem = self.problem()
        if problem:
            raise ValueError(problem)
        if self.selects_all:
            return UserSelection(all_matching=True, filters=self.filters())
        return UserSelection(ids=tuple(sorted(set(self.cleaned_data["pk"]))))

    def selected_users(self) -> QuerySet[User]:
        return self.selection().users()
