"""``Cache-Control: no-store`` on every page, fragment and export a logged-in admin gets.

The URLs are read from the URLconf, so a page added later is checked without editing this test.
"""

from __future__ import annotations

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from tests.support.users import make_user
from vpp.models import ItemStatus, Job, JobAction, JobItem, JobStatus

pytestmark = pytest.mark.django_db

# No user data, or not a browser endpoint: probes, Apple's notification receiver; logout ends the session.
SKIP = {"healthz", "readyz", "vpp-notifications", "logout"}


def console_routes(patterns=None, prefix: str = "") -> list[tuple[str, str]]:
    """(url name, route) of every console URL, outside the Django admin (checked separately)."""
    found = []
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        route = str(entry.pattern)
        if isinstance(entry, URLResolver):
            if route != "admin/":
                found += console_routes(entry.url_patterns, prefix + route)
        elif isinstance(entry, URLPattern) and entry.name not in SKIP:
            found.append((entry.name or route, prefix + route))
    return found


def fill(route: str, job: Job) -> str:
    """The route with its parameters filled: ``action`` is "invite", every id (pk, user_id, ...) the job's pk."""
    values = {"action": "invite"}
    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", lambda m: values.get(m.group(1), str(job.pk)), route)


@pytest.fixture
def job():
    user = make_user(name="Grace Hopper")
    job = Job.objects.create(action=JobAction.INVITE, status=JobStatus.DONE, total=1, channel="email")
    JobItem.objects.create(job=job, user=user, user_label="Grace Hopper", status=ItemStatus.SUCCEEDED)
    return job


def test_every_console_response_to_an_admin_says_no_store(admin_client, job, monkeypatch):
    from celery import current_app

    monkeypatch.setattr(current_app, "send_task", lambda *args, **kwargs: None)
    routes = console_routes()
    names = {name for name, _ in routes}
    assert {"list", "server-setting", "detail", "export", "administrators", "bulk-confirm"} <= names
    pk = job.items.get().user_id
    checked = []
    for name, route in routes:
        url = fill(route, job)
        response = admin_client.get(url)
        if response.status_code == 405:
            response = admin_client.post(url, {"pk": [pk]}, HTTP_HX_REQUEST="true")
        checked.append((name, url, response.status_code, response.get("Cache-Control", "")))
    missing = [entry for entry in checked if "no-store" not in entry[3]]
    assert missing == [], missing
    assert any(name == "export" and status == 200 for name, _, status, _ in checked)


def test_the_django_admin_and_the_login_page_say_no_store_too(admin_client, client):
    assert "no-store" in admin_client.get("/admin/auth/user/").get("Cache-Control", "")
    assert "no-store" in client.get("/login/").get("Cache-Control", "")
