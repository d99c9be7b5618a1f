"""Request glue: the session idle timeout, htmx-aware login redirects and messages, no-store."""

from __future__ import annotations

import time
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.shortcuts import resolve_url
from django.template.loader import render_to_string
from django_htmx.http import HttpResponseClientRedirect


class SessionIdleRefreshMiddleware:
    """Make SESSION_COOKIE_AGE an idle timeout without a database write on every request.

    SESSION_SAVE_EVERY_REQUEST would do the same with an UPDATE (and, on SQLite, a write
    lock) per request, job-panel polls included. Here a signed-in session is saved again
    only when its last refresh is SESSION_REFRESH_SECONDS old, so it expires after
    SESSION_COOKIE_AGE of idleness, give or take that interval.
    """

    KEY = "_refreshed_at"

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        session = request.session
        if session.session_key:  # never start a session for an anonymous visitor
            now = int(time.time())
            last = session.get(self.KEY)
            if not isinstance(last, int) or now - last >= settings.SESSION_REFRESH_SECONDS:
                session[self.KEY] = now  # modified: SessionMiddleware saves it and renews the cookie
        return self.get_response(request)


class HtmxLoginRedirectMiddleware:
    """An htmx request whose session expired gets a full-page redirect to the login page.

    Without this, htmx would follow Django's 302 and swap the login page into a table.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        login_path = resolve_url(settings.LOGIN_URL)
        if (
            getattr(request, "htmx", False)
            and response.status_code == 302
            and response.get("Location", "").startswith(login_path)
        ):
            query = urlencode({"next": request.htmx.current_url_abs_path or "/", "expired": "1"})
            return HttpResponseClientRedirect(f"{login_path}?{query}")
        return response


class HtmxMessagesMiddleware:
    """Append queued Django messages to htmx HTML responses as an out-of-band swap.

    Full pages render messages in base.html; fragments would otherwise leave them queued
    until the next full page load.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if not getattr(request, "htmx", False) or request.htmx.boosted:
            return response
        if response.streaming or response.status_code in (204, 286) or "HX-Redirect" in response:
            return response
        if not response.get("Content-Type", "").startswith("text/html"):
            return response
        storage = messages.get_messages(request)
        if not len(storage):
            return response
        html = render_to_string("partials/messages.html", {"messages": storage, "oob": True}, request=request)
        response.content += html.encode()
        return response


class NoStoreMiddleware:
    """``Cache-Control: no-store, private`` on every response to a logged-in admin.

    Pages, htmx fragments and CSV exports show device users, Apple Accounts and settings: no
    browser or proxy cache may keep a copy (e.g. after logout on a shared machine). One rule for
    all of them, so a new page is covered without remembering a decorator. A response that
    already says ``no-store`` is left as it is. Static files never reach this (WhiteNoise answers
    them first).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and "no-store" not in response.get("Cache-Control", ""):
            response["Cache-Control"] = "no-store, private"
        return response
