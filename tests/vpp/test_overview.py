"""The VPP overview: each funnel number equals the Users page it links to, at the bucket edges too."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from tests.support.users import make_user
from users.models import ActivationState as S
from users.models import Platform as P
from users.selectors import UserFilters, user_list
from vpp.models import Job, JobAction, VppUser, VppUserStatus
from vpp.overview import funnel

pytestmark = pytest.mark.django_db
DAY = dt.timedelta(days=1)


def population(now):
    make_user("Eligible A")
    make_user("Eligible B", email="")  # no email: still eligible (the helpdesk can invite)
    make_user("Inactive", active=False)  # not eligible
    make_user("No device", devices=())  # not eligible
    make_user("Android", devices=[(P.ANDROID, S.ACTIVATED)])  # not eligible
    make_user("Pending", vpp_status=VppUserStatus.PENDING)
    for age, name in [(DAY / 2, "fresh"), (DAY, "one day"), (3 * DAY, "three days"), (7 * DAY, "a week"),
                      (20 * DAY, "twenty"), (30 * DAY, "thirty"), (90 * DAY, "ninety")]:  # fmt: skip
        make_user(f"Invited {name}", vpp_status=VppUserStatus.INVITED, vpp_fields={"invited_at": now - age})
    make_user("Invited by a sync", vpp_status=VppUserStatus.INVITED)  # no invited_at: the oldest bucket
    make_user("Associated", vpp_status=VppUserStatus.ASSOCIATED)
    make_user("Retired", vpp_status=VppUserStatus.RETIRED)
    make_user(
        "Failed",
        vpp_status=VppUserStatus.INVITED,
        vpp_fields={"invited_at": now - 2 * DAY, "last_error_number": 9610, "last_error_message": "Apple said no"},
    )
    # A VPP user of a former organizational unit belongs to nobody here: counted nowhere.
    VppUser.objects.create(user=None, former_user=make_user("Moved"), status=VppUserStatus.ASSOCIATED)


def test_each_funnel_number_equals_the_users_page_it_links_to(time_machine):
    now = timezone.now()
    time_machine.move_to(now, tick=False)
    population(now)
    rows = {row.key: row for row in funnel()}
    expected = {
        "eligible": 3,  # A, B and "Moved" (its VPP user left with the old unit)
        "pending": 1,
        "invited": 9,
        "invited_1d": 1,
        "invited_7d": 3,  # exactly one day, three days, the failed one (two days)
        "invited_30d": 2,  # exactly a week, twenty days
        "invited_older": 3,  # exactly thirty, ninety, never recorded
        "associated": 1,
        "retired": 1,
        "failed": 1,
    }
    assert {key: row.count for key, row in rows.items()} == expected
    for key, row in rows.items():
        listed = user_list(filters=UserFilters.from_params(row.url_params)).count()
        assert listed == row.count, (key, row.url_params)
    ages = sum(rows[key].count for key in ("invited_1d", "invited_7d", "invited_30d", "invited_older"))
    assert ages == rows["invited"].count


def test_the_overview_page_links_each_number_and_shows_the_last_jobs(admin, client):
    make_user("Eligible")
    make_user("Invited", vpp_status=VppUserStatus.INVITED, vpp_fields={"invited_at": timezone.now()})
    job = Job.objects.create(action=JobAction.INVITE, total=1)
    response = client.get("/vpp/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'href="/users/?vpp_stage=eligible" data-count="1"' in html
    assert 'href="/users/?vpp_stage=invited_1d" data-count="1"' in html
    assert 'href="/users/?vpp_status=invited" data-count="1"' in html
    assert f'href="/vpp/jobs/{job.pk}/"' in html
    assert 'href="/vpp/"' in html and "aria-current" in html  # the "VPP" entry of the navigation
    assert "<style" not in html and "style=" not in html  # CSP: no inline style


def test_an_unknown_stage_does_not_filter(admin, client):
    make_user("A")
    make_user("B", vpp_status=VppUserStatus.RETIRED)
    assert user_list(filters=UserFilters.from_params({"vpp_stage": "bogus"})).count() == 2
    response = client.get("/users/?vpp_stage=bogus")
    assert response.status_code == 200
