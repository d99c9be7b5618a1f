"""Login throttling with django-axes: per address and per account, each with its own limit.

Axes counts failed logins per lockout parameter (``AXES_LOCKOUT_PARAMETERS = ["ip_address",
"username"]``) and compares the largest count with one ``AXES_FAILURE_LIMIT``. The console wants
two limits (settings ``LOGIN_FAILURES_PER_ADDRESS`` < ``LOGIN_FAILURES_PER_ACCOUNT``): one address
is locked out long before it could lock any account out for everyone, and an account is locked
only by failures from several addresses. ``ConsoleAxesHandler`` scales the account count onto the
address limit; everything else (storage, signals, clean-up, the admin's view of the attempts,
``manage.py axes_reset``) is axes' own. Tries made while locked out are not counted
(``AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False``), so the next allowed time is fixed.
Described in docs/roles.md ("Logins").
"""

from __future__ import annotations

import datetime as dt
import math

from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_username, get_cool_off
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.db.models import Sum
from django.shortcuts import render
from django.utils import timezone
from django.utils.cache import add_never_cache_headers

from kmconsole.views import login_context


def _limits() -> tuple[int, int]:
    return settings.LOGIN_FAILURES_PER_ADDRESS, settings.LOGIN_FAILURES_PER_ACCOUNT


class ConsoleAxesHandler(AxesDatabaseHandler):
    """Axes' database handler with a separate limit per address and per account."""

    def get_failures(self, request, credentials: dict | None = None) -> int:
        """Failures in the cool-off window, on the scale of ``AXES_FAILURE_LIMIT`` (the address limit).

        ``by_account * per_address // per_account`` reaches the address limit exactly when the
        account's own count reaches ``LOGIN_FAILURES_PER_ACCOUNT``.
        """
        by_address, by_account = (
            attempts.aggregate(n=Sum("failures_since_start"))["n"] or 0
            for attempts in self.get_user_attempts(request, credentials)
        )
        per_address, per_account = _limits()
        return max(by_address, by_account * per_address // per_account)


def _unlocks_at(attempts, limit: int, cool_off: dt.timedelta) -> dt.datetime | None:
    """The first whole second at which the failures of ``attempts`` (rows in the cool-off window)
    are below ``limit``, or None when they are below it now. A row counts until ``cool_off`` after
    its last failure, that instant included (axes filters ``attempt_time >= now - cool_off``)."""
    rows = list(attempts.order_by("attempt_time").values_list("attempt_time", "failures_since_start"))
    total = sum(failures for _, failures in rows)
    if total < limit:
        return None
    for attempt_time, failures in rows:
        total -= failures
        if total < limit:
            return (attempt_time + cool_off).replace(microsecond=0) + dt.timedelta(seconds=1)
    return None  # not reached: total ends at 0


def lockout_state(request, credentials: dict | None = None) -> tuple[dt.datetime, str] | None:
    """(next allowed login time in UTC, "address" or "account") for a locked-out request, else None.

    When both are locked, the later time wins (and "address" when they tie).
    """
    handler = ConsoleAxesHandler()
    cool_off = get_cool_off(request)
    by_address, by_account = handler.get_user_attempts(request, credentials)
    per_address, per_account = _limits()
    found = [
        (at, what)
        for at, what in (
            (_unlocks_at(by_address, per_address, cool_off), "address"),
            (_unlocks_at(by_account, per_account, cool_off), "account"),
        )
        if at is not None
    ]
    return max(found, key=lambda found_at: found_at[0]) if found else None


def lockout_response(request, original_response=None, credentials: dict | None = None):
    """``AXES_LOCKOUT_CALLABLE``: the login page again, status 429, saying when the next try is allowed.

    Sets ``Retry-After`` (seconds). The password is never echoed back.
    """
    state = lockout_state(request, credentials)
    now = timezone.now()
    until, what = state if state else (now + get_cool_off(request), "address")
    wait = max(1, math.ceil((until - now).total_seconds()))
    form = AuthenticationForm(request, initial={"username": get_client_username(request, credentials) or ""})
    context = {
        **login_context(request),
        "form": form,
        "next": request.POST.get("next", ""),
        "lockout": {"until": until, "wait_minutes": max(1, round(wait / 60)), "by": what},
    }
    response = render(request, "registration/login.html", context, status=settings.AXES_HTTP_RESPONSE_CODE)
    add_never_cache_headers(response)
    response["Retry-After"] = str(wait)
    return response
