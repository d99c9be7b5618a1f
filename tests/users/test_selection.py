"""The one shape of a bulk action's selection: users.selectors.UserSelection."""

from __future__ import annotations

import re

import pytest

from tests.support.users import make_user
from users.models import ActivationState, Platform
from users.selectors import UserFilters, UserSelection

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "selection",
    [
        UserSelection(ids=(3, 7, 9)),
        UserSelection(all_matching=True),
        UserSelection(all_matching=True, filters=UserFilters(q="ann berg", platform="macos", activated=False)),
        UserSelection(all_matching=True, filters=UserFilters(extra=(("vpp_status", "none"),))),
        UserSelection(ids=(4, 8), retry_of=12),
    ],
)
def test_it_round_trips_through_the_json_of_job_selection(selection):
    assert UserSelection.from_json(selection.to_json()) == selection


def test_its_json_is_readable():
    assert UserSelection(ids=(3, 7, 9)).to_json() == {"ids": [3, 7, 9]}
    filtered = UserSelection(all_matching=True, filters=UserFilters(platform="macos"))
    assert filtered.to_json() == {"all_matching": True, "filter": {"platform": "macos"}}
    assert UserSelection(ids=(4,), retry_of=12).to_json() == {"ids": [4], "retry_of": 12}


def test_a_full_syncs_selection_is_not_a_selection_of_users():
    with pytest.raises(ValueError, match="not a user selection"):
        UserSelection.from_json({"scope": "all", "trigger": "schedule"})


@pytest.mark.parametrize(
    ("selection", "count", "text"),
    [
        (UserSelection(ids=(1, 2, 3)), 3, "3 selected users"),
        (UserSelection(ids=(1,)), 1, "1 selected user"),
        (
            UserSelection(all_matching=True, filters=UserFilters(platform="macos")),
            137,
            "all 137 users matching platform=macOS",
        ),
        (UserSelection(all_matching=True, filters=UserFilters(platform="ios")), 1, "the 1 user matching platform=iOS"),
        (UserSelection(all_matching=True, filters=UserFilters(q="zz")), 0, 'no users matching q="zz"'),
        (UserSelection(all_matching=True), 12_345, "all 12,345 users"),
        (
            UserSelection(all_matching=True, filters=UserFilters(activated=True, extra=(("vpp_status", "none"),))),
            2,
            "all 2 users matching vpp_status=Not a VPP user, activated=yes",
        ),
        (UserSelection(ids=(4, 8, 9, 10), retry_of=12), 4, "4 users, the failed ones of job #12"),
    ],
)
def test_it_describes_who_for_the_audit_text(selection, count, text):
    assert selection.describe(count=count) == text


def test_its_users_are_the_ticked_ones_or_the_filter_reapplied():
    mac = make_user("Mac User", devices=[(Platform.MACOS, ActivationState.ACTIVATED)])
    phone = make_user("Phone User", devices=[(Platform.IOS, ActivationState.ACTIVATED)])
    assert set(UserSelection(ids=(phone.pk, 999_999)).users()) == {phone}
    assert set(UserSelection(all_matching=True, filters=UserFilters(platform="macos")).users()) == {mac}
    assert set(UserSelection(all_matching=True).users()) == {mac, phone}


@pytest.mark.parametrize(
    "posted, says",
    [
        ({"select_all": "1", "q": "x" * 201}, "The filter was not understood (q)"),
        ({"select_all": "1", "platform": "bogus"}, "The filter was not understood (platform)"),
        ({"select_all": "1", "activated": "maybe", "q": "a\x00"}, "The filter was not understood (q, activated)"),
        ({"pk": ["99999999999999999999"]}, "invalid user ids"),
        ({"pk": ["0"]}, "invalid user ids"),
        ({"pk": ["١٢"]}, "invalid user ids"),
        ({}, "Select at least one user."),
    ],
)
def test_a_posted_selection_that_does_not_validate_is_refused_never_widened(posted, says):
    from django.http import QueryDict

    from users.forms import UserSelectionForm

    data = QueryDict(mutable=True)
    for key, value in posted.items():
        data.setlist(key, value if isinstance(value, list) else [value])
    form = UserSelectionForm(data)
    assert says in form.problem()
    with pytest.raises(ValueError, match=re.escape(says)):
        form.selection()


def test_the_largest_id_the_database_holds_is_a_valid_one():
    from users.forms import MAX_PK, valid_pk

    assert valid_pk(str(MAX_PK)) and not valid_pk(str(MAX_PK + 1)) and not valid_pk("-1") and not valid_pk(" 1")
