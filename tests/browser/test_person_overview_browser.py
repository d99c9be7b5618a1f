"""The VPP overview and a person's page in headless Chromium.

- From the Users page to a person's page; the invitation link is revealed, copied to the
  clipboard and shown as a QR code.
- Every funnel number of the overview opens a Users page whose count is that number.

Writes var/screenshots/vpp-overview.png and person-page.png for a look by eye.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from tests.support.users import make_user
from tests.vpp.test_overview import population
from vpp.models import AuditEvent, InvitationDelivery, Job, JobAction, JobItem, JobStatus, VppUser, VppUserStatus

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SHOTS = Path(settings.VAR_DIR) / "screenshots"


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_a_person_page_from_the_users_page_copies_the_link_and_shows_the_qr_code(logged_in_page, console_url):
    page = logged_in_page
    person = make_user(
        "Noor Helpdesk",
        email="",
        vpp_status=VppUserStatus.INVITED,
        vpp_fields={"invite_code": "INV0123456789", "invited_at": timezone.now(), "invitation_count": 1},
    )
    make_user("Someone Else")
    vpp_user = VppUser.objects.get(user=person)
    job = Job.objects.create(action=JobAction.INVITE, total=1, status=JobStatus.DONE, channel="helpdesk")
    JobItem.objects.create(job=job, user=person, vpp_user=vpp_user, status="succeeded", user_label="Noor")
    link = "https://buy.itunes.apple.com/WebObjects/MZFinance.woa/wa/associateVPPUserWithITSAccount?inviteCode=INV0123456789"
    InvitationDelivery.objects.create(
        vpp_user=vpp_user, channel="helpdesk", job=job, link=link, state="sent", sent_at=timezone.now()
    )
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=console_url)

    page.goto(f"{console_url}/users/")
    page.click("text=Noor Helpdesk")
    page.wait_for_url(f"**/users/{person.pk}/")
    assert page.locator("h1").inner_text() == "Noor Helpdesk"
    page.wait_for_selector("#licences .callout")  # the live licences answer (no sandbox here: a message)
    page.click("#reveal-link")
    qr = page.wait_for_selector("#invitation-qr svg")
    assert qr.bounding_box()["width"] > 100
    assert page.input_value("#invitation-link-text") == link
    page.click("[data-copy]")
    page.wait_for_function("() => document.querySelector('[data-copy-state]').textContent === 'Copied'")
    assert page.evaluate("navigator.clipboard.readText()") == link
    assert AuditEvent.objects.filter(action="vpp.person.invitation_link_shown").count() == 1
    shot(page, "person-page")
    assert page.console_errors == []


def test_each_funnel_number_opens_a_users_page_with_that_many_users(logged_in_page, console_url):
    page = logged_in_page
    population(timezone.now())
    Job.objects.create(action=JobAction.INVITE, total=3, status=JobStatus.DONE, succeeded=3)
    page.click("nav.mainnav >> text=VPP")
    page.wait_for_url("**/vpp/")
    shot(page, "vpp-overview")
    links = page.locator("a.funnel-count")
    stages = page.locator(".funnel-row").evaluate_all("rows => rows.map(r => r.dataset.stage)")
    assert len(stages) == 10 and links.count() == 10
    for index, stage in enumerate(stages):
        link = page.locator("a.funnel-count").nth(index)
        expected = int(link.get_attribute("data-count"))
        assert link.inner_text().replace(",", "") == str(expected)
        link.click()
        page.wait_for_url(re.compile(r".*/users/\?vpp_(stage|status)=" + stage + "$"))
        shown = page.locator(".result-count").inner_text()
        assert int(shown.split()[0].replace(",", "")) == expected, (stage, shown)
        assert page.locator("#user-table td.col-name").count() == expected
        page.go_back()
        page.wait_for_url("**/vpp/")
    assert page.console_errors == []


@pytest.mark.sandbox
def test_a_person_page_lists_the_licences_held_at_apple(logged_in_page, console_url, vpp_sandbox):
    from tests.support.sandbox import Api, store_sandbox_token
    from vpp.content_token import vpp_client

    page = logged_in_page
    setting = store_sandbox_token(vpp_sandbox)
    person = make_user(
        "Ada Licensed",
        devices=[("ios", "activated", "push-token-1"), ("macos", "deactivated")],
        vpp_status=VppUserStatus.ASSOCIATED,
        vpp_fields={"id_hash": "hash-shared", "last_synced_at": timezone.now()},
        at_apple=vpp_client(setting),
    )
    make_user("Ada's Twin", vpp_status=VppUserStatus.ASSOCIATED, vpp_fields={"id_hash": "hash-shared"})
    cuid = str(VppUser.objects.get(user=person).client_user_id)
    api = Api(vpp_sandbox)
    assets = [{"adamId": adam, "pricingParam": "STDQ"} for adam in ("361309726", "361304891")]
    api.finished(api.ok("POST", "/assets/associate", {"assets": assets, "clientUserIds": [cuid]})["eventId"])

    page.goto(f"{console_url}/users/{person.pk}/")
    page.wait_for_selector("#licences-table")
    assert page.locator("#licences-table tbody tr").count() == 2
    assert "361309726" in page.locator("#licences-table").inner_text()
    assert page.locator("#shared-account-warning").is_visible()
    shot(page, "person-page-licences")

    # The actions: the bulk confirmation with this one user, then the job.
    page.click("#person-actions >> text=Sync VPP")
    page.wait_for_selector("#modal[open] >> text=Sync 1 user")
    page.click("#modal button[type=submit]")
    page.wait_for_function("() => !!document.querySelector('#modal [hx-get*=\"/panel/\"], #modal .job-panel')")
    job = Job.objects.get(action=JobAction.SYNC)
    assert job.selection == {"ids": [person.pk]} and job.total == 1
    assert page.console_errors == []
