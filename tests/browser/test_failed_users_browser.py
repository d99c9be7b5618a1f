"""The job page and the full sync's result page name each failed user with Apple's number and a
plain reason (issue 11.1, 11.2), in headless Chromium against jobs run on the sandbox over HTTP.
Writes PNGs to var/screenshots/."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings as django_settings

from tests.support.browser import BROWSER_ADMIN
from tests.support.job_loop import run_job
from tests.support.sandbox import store_sandbox_token, upload_sandbox_token
from tests.support.users import make_user
from users.models import User
from users.selectors import UserSelection
from vpp.content_token import vpp_client
from vpp.jobs.engine import job_create
from vpp.jobs.plan import vpp_plan_build
from vpp.models import JobAction, VppUserStatus
from vpp.services import sync as sync_service

pytestmark = [pytest.mark.browser, pytest.mark.sandbox, pytest.mark.django_db(transaction=True)]
SHOTS = Path(django_settings.VAR_DIR) / "screenshots"
REFUSED = "refused@example.com"


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"vpp-{name}.png"), full_page=True)


@pytest.fixture
def setting(vpp_sandbox, settings):
    settings.VPP_EVENT_POLL_INTERVAL = 1
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    return store_sandbox_token(vpp_sandbox)


def test_the_job_page_names_the_refused_user_with_apples_number(logged_in_page, console_url, vpp_sandbox, setting):
    page = logged_in_page
    users = [make_user(f"Fine {n}") for n in range(4)] + [make_user("Refused Rita", email=REFUSED)]
    vpp_sandbox.control(refuse_emails=[REFUSED])
    plan = vpp_plan_build(action=JobAction.INVITE, users=User.objects.filter(pk__in=[u.pk for u in users]),
                          channel="email")  # fmt: skip
    job = run_job(job_create(plan=plan, actor=None, selection=UserSelection(ids=tuple(u.pk for u in users))),
                  vpp_client(setting))  # fmt: skip
    assert (job.succeeded, job.failed) == (4, 1)

    page.goto(f"{console_url}/vpp/jobs/{job.pk}/?status=failed")
    row = page.locator("table.job-items tbody tr", has_text="Refused Rita")
    assert "9717" in row.inner_text()
    assert "Apple rejected the user's e-mail address as invalid." in row.inner_text()
    shot(page, "job-refused-user")
    assert not page.console_errors


def test_the_sync_result_page_lists_the_user_whose_push_apple_refused(
    logged_in_page, console_url, vpp_sandbox, settings, django_capture_on_commit_callbacks
):
    page = logged_in_page
    settings.VPP_EVENT_POLL_INTERVAL = 1
    upload_sandbox_token(vpp_sandbox)  # the full sync needs a checked token and a claimed unit
    client = vpp_client()
    user = make_user("Pushy Pat", email="pat@example.com", vpp_status=VppUserStatus.INVITED, at_apple=client)
    User.objects.filter(pk=user.pk).update(email=REFUSED)
    vpp_sandbox.control(refuse_emails=[REFUSED])
    with django_capture_on_commit_callbacks(execute=False):
        started = sync_service.sync_start(actor=None, trigger="manual")
    job = run_job(started.job, None)
    assert job.failed == 1

    page.goto(f"{console_url}/vpp/jobs/{job.pk}/")
    card = page.locator("#sync-result")
    assert "1 user" in card.inner_text()
    row = page.locator("table.job-items tbody tr", has_text="Pushy Pat")
    assert "9717" in row.inner_text() and "Apple rejected the user's e-mail address" in row.inner_text()
    shot(page, "sync-refused-push")
    assert BROWSER_ADMIN and not page.console_errors


def test_the_confirmation_names_a_user_whose_address_apple_refuses(logged_in_page, console_url, setting):
    from playwright.sync_api import expect

    page = logged_in_page
    make_user("Modal Fine")
    make_user("Modal Dotless", email="dotless@localhost")
    page.goto(f"{console_url}/users/")
    page.fill("#id_q", "Modal")
    with page.expect_response(lambda response: "q=" in response.url):
        page.locator("#id_q").blur()
    expect(page.locator("input.row-check")).to_have_count(2)
    page.wait_for_timeout(400)
    for index in range(2):
        page.locator("input.row-check").nth(index).check()
    page.click("button:has-text('Send VPP invitation')")
    page.wait_for_selector("#modal[open] >> text=1 user")
    modal = page.inner_text("#modal")
    assert "Email address Apple refuses" in modal and "Modal Dotless" in modal
    shot(page, "confirm-refused-address")
    assert not page.console_errors
