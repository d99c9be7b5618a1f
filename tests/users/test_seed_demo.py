"""manage.py seed_demo: a realistic, deterministic mix, written in bulk."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Count

from users.models import APPLE_PLATFORMS, ActivationState, Device, User
from users.services import user_device_summary_refresh

pytestmark = pytest.mark.django_db

SUMMARY = (
    "last_seen_at",
    "has_activated_apple_device",
    "has_ios",
    "has_ipados",
    "has_macos",
    "has_android",
    "has_windows",
)


def seed(*args) -> str:
    out = StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def test_it_creates_a_realistic_mix():
    output = seed("--users", "400", "--seed", "5")
    assert "Created 400 device users" in output
    assert User.objects.count() == 400
    platforms = dict(Device.objects.values_list("platform").annotate(n=Count("id")))
    assert set(platforms) == {"ios", "ipados", "macos", "android", "windows"}
    states = set(Device.objects.values_list("activation_state", flat=True))
    assert states == {"activated", "pending", "deactivated"}
    assert 0 < User.objects.filter(email="").count() < 100  # some have no email
    assert User.objects.filter(devices__isnull=True).exists()  # some have no device
    assert User.objects.annotate(n=Count("devices")).filter(n__gte=2).exists()
    with_push = Device.objects.exclude(push_token="")
    assert with_push.exists()
    assert not with_push.exclude(platform__in=APPLE_PLATFORMS).exists()
    assert not with_push.exclude(activation_state=ActivationState.ACTIVATED).exists()
    assert len(set(User.objects.values_list("login_id", flat=True))) == 400


def test_it_fills_the_device_summary_and_search_columns_as_the_service_would():
    seed("--users", "150", "--seed", "6")
    seeded = {row["id"]: row for row in User.objects.values("id", *SUMMARY)}
    user_device_summary_refresh()
    recomputed = {row["id"]: row for row in User.objects.values("id", *SUMMARY)}
    assert seeded == recomputed
    user = User.objects.exclude(email="").first()
    assert user.search_text == f"{user.display_name} {user.login_id} {user.email}".lower()


def test_it_is_deterministic_for_a_seed():
    seed("--users", "50", "--seed", "9")
    first = list(User.objects.order_by("id").values_list("display_name", "login_id", "email", "department"))
    seed("--users", "50", "--seed", "9", "--reset")
    assert list(User.objects.order_by("id").values_list("display_name", "login_id", "email", "department")) == first


def test_it_adds_to_existing_users_with_unique_login_ids_and_resets_on_request():
    seed("--users", "60", "--seed", "1")
    seed("--users", "60", "--seed", "1")  # same names again: logins get a suffix
    assert User.objects.count() == 120
    assert User.objects.values("login_id").distinct().count() == 120
    seed("--users", "10", "--reset")
    assert User.objects.count() == 10


def test_it_refuses_a_negative_count():
    with pytest.raises(CommandError, match="--users must be 0 or more"):
        seed("--users", "-1")
