"""Users page → Send VPP invitation → job finishes → job page; then Delete from VPP — in headless Chromium,
with a real Celery worker and the sandbox over HTTP. Writes PNGs of the modal, panel and job page to
var/screenshots/."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import Permission

from tests.support.sandbox import store_sandbox_token
from tests.support.users import make_user
from tests.support.worker import Worker, purge_queue
from vpp.models import Job, JobStatus, VppUser, VppUserStatus

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.sandbox, pytest.mark.django_db(transaction=True)]
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SHOTS = Path(django_settings.VAR_DIR) / "screenshots"


@pytest.fixture
def worker(tmp_path, vpp_sandbox):
    vpp_sandbox.control(pending_seconds=0.1)
    store_sandbox_token(vpp_sandbox)
    purge_queue()
    (tmp_path / "outbox").mkdir()
    process = Worker(outbox=tmp_path / "outbox").start()
    yield process
    process.kill()


@pytest.fixture
def page(live_server, django_user_model, worker):
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        pytest.skip("Chromium is not installed (make tools installs it)")
    from playwright.sync_api import sync_playwright

    admin = django_user_model.objects.create_user("admin", email="admin@example.com", password="pw-for-browser-1")
    admin.user_permissions.add(
        *Permission.objects.filter(codename__in=["invite_vppuser", "delete_vppuser", "sync_vppuser"])
    )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        tab = browser.new_page(viewport={"width": 1280, "height": 900})
        tab.set_default_timeout(20_000)
        tab.goto(f"{live_server.url}/login/")
        tab.fill("input[name=username]", "admin")
        tab.fill("input[name=password]", "pw-for-browser-1")
        tab.click("button[type=submit]")
        tab.wait_for_url("**/users/**")
        yield tab
        browser.close()


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"vpp-{name}.png"), full_page=False)


def tick_filtered(page, live_server, query: str, count: int) -> None:
    from playwright.sync_api import expect

    page.goto(f"{live_server.url}/users/")
    # Typing fetches the filtered table after a short pause; wait for that answer.
    with page.expect_response(lambda response: "q=" in response.url):
        page.fill("#id_q", query)
    expect(page.locator("input.row-check")).to_have_count(count)  # CSP: no eval, so no wait_for_function
    boxes = page.locator("input.row-check")
    for index in range(count):
        boxes.nth(index).check()
    expect(page.locator("[data-selection-count]")).to_have_text(str(count))


def test_it_invites_then_deletes_from_the_users_page(page, live_server, worker):
    for n in range(2):
        make_user(name=f"Browser Invitee {n}")
    make_user(name="Someone Else")
    make_user(name="Browser Nodevice", devices=())

    tick_filtered(page, live_server, "Browser", 3)
    page.click("button:has-text('Send VPP invitation')")
    page.wait_for_selector("#modal[open] >> text=2 users")
    assert "No activated iOS/macOS device" in page.inner_text("#modal")
    shot(page, "confirm-invite")
    page.click("#modal button:has-text('Send 2 invitations')")
    page.wait_for_selector("#modal .job-panel")
    page.wait_for_selector("#modal .job-panel[data-job-status=done]", timeout=60_000)
    shot(page, "job-panel-done")
    page.click("#modal a:has-text('Open job page')")
    page.wait_for_selector("h1:has-text('Send VPP invitation')")
    assert "Skipped" in page.inner_text("main")
    shot(page, "job-page")
    assert set(VppUser.objects.values_list("status", flat=True)) == {VppUserStatus.INVITED}

    tick_filtered(page, live_server, "Browser Invitee", 2)
    page.click("button:has-text('Delete from VPP')")
    page.wait_for_selector("#modal[open] >> text=will be deleted from VPP")
    shot(page, "confirm-delete")
    page.check("#modal input[name=understood]")
    page.click("#modal button:has-text('Delete 2 from VPP')")
    page.wait_for_selector("#modal .job-panel[data-job-status=done]", timeout=60_000)
    assert Job.objects.order_by("-pk").first().status == JobStatus.DONE
    assert set(VppUser.objects.values_list("status", flat=True)) == {VppUserStatus.RETIRED}
