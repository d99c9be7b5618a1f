"""Other apps add Users page filters through users.selectors.register_filter (users/ knows none of them)."""

from __future__ import annotations

import pytest

from tests.support.users import make_user
from users.forms import UserFilterForm
from users.selectors import EXTRA_FILTERS, UserFilters, register_filter

pytestmark = pytest.mark.django_db


@pytest.fixture
def department_filter():
    """A filter registered the way an app's ready() does it, removed again afterwards."""
    extra = register_filter(
        name="dept",
        label="Department",
        any_label="Any department",
        choices=[("sales", "Sales team")],
        apply=lambda queryset, value: queryset.filter(department=value),
    )
    yield extra
    del EXTRA_FILTERS["dept"]


def test_a_registered_filter_is_a_toolbar_select_and_filters_the_page(admin_client, department_filter):
    make_user("Sam Seller", department="sales")
    make_user("Otto Other", department="ops")
    html = admin_client.get("/users/", {"dept": "sales"}).content.decode()
    assert '<label class="sr-only" for="id_dept">Department</label>' in html
    assert '<option value="sales" selected>Sales team</option>' in html
    assert "Sam Seller" in html and "Otto Other" not in html
    assert '<input type="hidden" name="dept" value="sales">' in html  # "select all matching" keeps it


def test_the_form_ignores_a_value_outside_the_registered_choices(department_filter):
    assert UserFilterForm({"dept": "sales"}).filters().extra == (("dept", "sales"),)
    assert UserFilterForm({"dept": "nope"}).filters().extra == ()


def test_filters_round_trip_through_their_params(department_filter):
    filters = UserFilters(q="ann", platform="macos", activated=False, extra=(("dept", "sales"),))
    assert filters.as_params() == {"q": "ann", "platform": "macos", "dept": "sales", "activated": "no"}
    assert UserFilters.from_params(filters.as_params()) == filters


def test_a_filter_may_not_take_a_name_the_page_uses():
    with pytest.raises(ValueError, match="'q'"):
        register_filter(name="q", label="Q", any_label="Any", choices=[], apply=lambda qs, value: qs)
