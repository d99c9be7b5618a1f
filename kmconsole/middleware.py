"""htmx-aware glue: login redirects and messages for fragment responses."""

from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.shortcuts import resolve_url
from django.template.loader import render_to_string
from django_htmx.http import HttpResponseClientRedirect


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
