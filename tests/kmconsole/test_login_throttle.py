"""Login throttling: django-axes behind the real login view, per address and per account.

Small limits (3 per address, 5 per account, 15 minutes) keep the tests short; the production
defaults (10, 30, 15) follow the same rules. Times are frozen with time-machine, so the next
allowed time on the page is exact.
"""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from axes.models import AccessAttempt
from django.contrib.auth.models import User
from django.test import Client

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 3, 2, 10, 0, 0, tzinfo=dt.UTC)
PASSWORD = "the-right-password-1"
ATTACKER, OFFICE, HOME, CAFE = "198.51.100.7", "203.0.113.10", "203.0.113.20", "203.0.113.30"


@pytest.fixture(autouse=True)
def small_limits(settings):
    settings.LOGIN_FAILURES_PER_ADDRESS = settings.AXES_FAILURE_LIMIT = 3
    settings.LOGIN_FAILURES_PER_ACCOUNT = 5
    settings.AXES_COOLOFF_TIME = dt.timedelta(minutes=15)


@pytest.fixture
def ada(db):
    return User.objects.create_user("ada", password=PASSWORD)


def login(address: str, username: str = "ada", password: str = "wrong", **headers):
    return Client(REMOTE_ADDR=address, **headers).post("/login/", {"username": username, "password": password})


def test_wrong_passwords_from_one_address_lock_it_out_with_the_next_allowed_time(ada):
    with time_machine.travel(T0, tick=False) as clock:
        assert [login(ATTACKER).status_code for _ in range(2)] == [200, 200]
        clock.move_to(T0 + dt.timedelta(minutes=1))
        third = login(ATTACKER)  # the limit: this try locks the address
        assert third.status_code == 429
        html = third.content.decode()
        assert "Too many failed logins from your network address" in html
        assert "The next try is allowed at <strong><time" in html and "10:16:01 UTC" in html
        assert third["Retry-After"] == str(15 * 60 + 1) and "(in about 15 minutes)" in html
        assert "wrong" not in html  # the password is never echoed

        clock.move_to(T0 + dt.timedelta(minutes=5))
        refused = login(ATTACKER, password=PASSWORD)  # even the right password waits
        assert refused.status_code == 429 and "10:16:01 UTC" in refused.content.decode()
        assert refused["Retry-After"] == str(11 * 60 + 1)
        assert "_auth_user_id" not in refused.wsgi_request.session

        clock.move_to(T0 + dt.timedelta(minutes=16))
        assert login(ATTACKER, password=PASSWORD).status_code == 429  # not yet: the time shown is exact
        clock.move_to(T0 + dt.timedelta(minutes=16, seconds=1))
        assert login(ATTACKER, password=PASSWORD).status_code == 302


def test_one_address_cannot_lock_an_admin_out_for_everyone(ada):
    with time_machine.travel(T0, tick=False):
        codes = [login(ATTACKER).status_code for _ in range(30)]
        assert codes[:2] == [200, 200] and set(codes[2:]) == {429}
        # Tries while locked are not counted: the account has only the address limit's worth.
        assert sum(AccessAttempt.objects.filter(username="ada").values_list("failures_since_start", flat=True)) == 3
        response = login(OFFICE, password=PASSWORD)
        assert response.status_code == 302 and response["Location"] == "/users/"


def test_an_address_is_throttled_across_accounts(ada):
    for name in ("bob", "cy", "dee"):
        User.objects.create_user(name, password=PASSWORD)
    with time_machine.travel(T0, tick=False):
        assert login(ATTACKER, "bob").status_code == 200
        assert login(ATTACKER, "cy").status_code == 200
        assert login(ATTACKER, "nobody-by-this-name").status_code == 429
        assert login(ATTACKER, "dee", password=PASSWORD).status_code == 429
        assert login(OFFICE, "dee", password=PASSWORD).status_code == 302


def test_failures_from_several_addresses_lock_the_account(ada):
    with time_machine.travel(T0, tick=False) as clock:
        assert [login(ATTACKER).status_code for _ in range(3)] == [200, 200, 429]
        clock.move_to(T0 + dt.timedelta(minutes=2))
        assert login(HOME).status_code == 200
        locked = login(HOME)  # the account's 5th failure
        assert locked.status_code == 429
        html = locked.content.decode()
        assert "Too many failed logins for this account" in html
        # The account unlocks when its oldest failures leave the 15-minute window: just after
        # 10:15:00 only the home address's two (10:02) are left, below the account's limit.
        assert "10:15:01 UTC" in html

        refused = login(CAFE, password=PASSWORD)  # a third address, the right password
        assert refused.status_code == 429 and "for this account" in refused.content.decode()
        clock.move_to(T0 + dt.timedelta(minutes=15))
        assert login(CAFE, password=PASSWORD).status_code == 429
        clock.move_to(T0 + dt.timedelta(minutes=15, seconds=1))
        assert login(CAFE, password=PASSWORD).status_code == 302


def test_a_successful_login_clears_the_failures(ada):
    with time_machine.travel(T0, tick=False):
        assert [login(OFFICE).status_code for _ in range(2)] == [200, 200]
        assert login(OFFICE, password=PASSWORD).status_code == 302
        assert [login(OFFICE).status_code for _ in range(2)] == [200, 200]


def test_behind_the_proxy_each_client_address_counts_not_the_proxys(ada, settings):
    # BEHIND_PROXY=1: the right-most X-Forwarded-For entry is the one the proxy appended.
    settings.AXES_IPWARE_META_PRECEDENCE_ORDER = ("HTTP_X_FORWARDED_FOR", "REMOTE_ADDR")
    settings.AXES_IPWARE_PROXY_ORDER = "right-most"
    proxy = "172.18.0.2"
    with time_machine.travel(T0, tick=False):
        # The attacker varies a spoofed left-hand entry: still one address.
        codes = [login(proxy, headers={"X-Forwarded-For": f"10.9.9.{i}, {ATTACKER}"}).status_code for i in range(4)]
        assert codes == [200, 200, 429, 429]
        ok = login(proxy, password=PASSWORD, headers={"X-Forwarded-For": OFFICE})
        assert ok.status_code == 302
