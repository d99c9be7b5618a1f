"""users.services.users_upsert / users_deactivate / devices_upsert: the writes every import of people shares."""

from __future__ import annotations

import pytest

from tests.support.users import make_user
from users.models import ActivationState, Device, Platform, User
from users.services import DeviceRecord, PersonRecord, devices_upsert, users_deactivate, users_upsert

pytestmark = pytest.mark.django_db


def rec(key, name="Ann Lee", **fields) -> PersonRecord:
    return PersonRecord(key=key, display_name=name, **fields)


def test_it_creates_then_reports_unchanged_and_updates_by_key():
    first = users_upsert(records=[rec("1", email="ann@example.com", department="Sales")])
    assert [c.action for c in first.changes] == ["created"] and first.changes[0].user_id

    again = users_upsert(records=[rec("1", email="ann@example.com", department="Sales")])
    changed = users_upsert(records=[rec("1", email="ann@example.com", department="Finance")])

    assert (again.changes, again.unchanged) == ([], 1)
    assert [(c.action, c.fields) for c in changed.changes] == [("updated", ("department",))]
    assert "department: 'Sales' → 'Finance'" in changed.changes[0].detail
    user = User.objects.get(apple_business_id="1")
    assert user.department == "Finance" and "ann@example.com" in user.search_text


def test_it_matches_a_user_that_existed_before_by_email_case_insensitively():
    before = make_user("Ann", login_id="ann", email="Ann@Example.com", devices=())

    result = users_upsert(records=[rec("1", email="ann@example.com")])

    before.refresh_from_db()
    assert before.apple_business_id == "1" and before.login_id == "ann"
    assert result.changes[0].matched_by == "email" and User.objects.count() == 1


def test_a_taken_login_id_gets_the_key_appended():
    make_user("Other", login_id="ann@example.com", email="", devices=())

    users_upsert(records=[rec("7", email="ann@example.com"), rec("8", name="Bo", email="ann@example.com")])

    logins = set(User.objects.exclude(apple_business_id="").values_list("login_id", flat=True))
    assert logins == {"ann@example.com-7", "ann@example.com-8"}


def test_a_dry_run_writes_nothing_and_inactive_strangers_are_not_created():
    dry = users_upsert(records=[rec("1"), rec("2", is_active=False)], create_inactive=False, dry_run=True)

    assert [c.action for c in dry.changes] == ["skipped", "created"]
    assert not User.objects.exists()


def test_deactivate_never_deletes():
    users_upsert(records=[rec("1"), rec("2", name="Bo")])

    result = users_deactivate(keys=["1", "nobody"], reason="gone")

    assert [c.action for c in result.changes] == ["deactivated"]
    assert dict(User.objects.values_list("apple_business_id", "is_active")) == {"1": False, "2": True}


def test_devices_are_updated_by_serial_and_created_only_with_an_owner():
    owner = make_user("Ann", devices=[(Platform.IOS, ActivationState.ACTIVATED)])
    Device.objects.filter(user=owner).update(serial_number="S1")
    users_upsert(records=[rec("1", name="Bo")])

    result = devices_upsert(
        records=[
            DeviceRecord("S1", model="iPad Air", platform=Platform.IPADOS, org_status="ASSIGNED"),
            DeviceRecord("S2", model="iPhone 15", platform=Platform.IOS, owner_key="1"),
            DeviceRecord("S3", model="Mac"),
        ]
    )

    assert [c.action for c in result.changes] == ["updated", "created", "skipped"]
    assert Device.objects.get(serial_number="S1").platform == Platform.IPADOS
    assert Device.objects.get(serial_number="S2").user.apple_business_id == "1"
    owner.refresh_from_db()
    assert owner.has_ipados and not owner.has_ios
