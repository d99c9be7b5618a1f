"""The audit event of a bulk job started from the Users page reads as a sentence: the action,
how many users and which ones (ticked rows, "all N matching" a filter, or a retry)."""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import urlencode

import pytest
from celery import current_app
from django.contrib.auth.models import Permission
from django.contrib.auth.models import User as Admin

from tests.support.users import make_user
from users.models import Platform
from vpp.models import AuditEvent, ItemStatus, Job, JobAction, JobItem, JobStatus, VppUser, VppUserStatus

pytestmark = pytest.mark.django_db
FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def admin_client(client, token_setting, monkeypatch):
    admin = Admin.objects.create_user("auditor", password="pw-0123456789")
    codenames = ("invite_vppuser", "delete_vppuser", "sync_vppuser")
    admin.user_permissions.add(*Permission.objects.filter(content_type__app_label="vpp", codename__in=codenames))
    client.force_login(admin)
    monkeypatch.setattr(current_app, "send_task", lambda name, args: None)  # no broker here
    return client


def confirm_and_apply(client, action: str, posted: dict, **extra) -> Job:
    """What the Users page does: POST the bulk form to confirm, then POST what the modal carries to apply."""
    body = urlencode(posted, doseq=True)
    modal = client.post(f"/vpp/bulk/{action}/confirm/", body, content_type=FORM, HTTP_HX_REQUEST="true")
    assert modal.status_code == 200
    carried = [
        (name, unescape(value))
        for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', modal.content.decode())
        if name != "csrfmiddlewaretoken"
    ]
    body = urlencode(carried + list(extra.items()))
    started = client.post(f"/vpp/bulk/{action}/apply/", body, content_type=FORM, HTTP_HX_REQUEST="true")
    assert started.status_code == 200
    return Job.objects.latest("pk")


def audit_of(job: Job) -> AuditEvent:
    return AuditEvent.objects.get(job=job, action=f"vpp.{job.action}")


def test_a_job_of_ticked_rows_says_how_many_were_selected(admin_client):
    ticked = [make_user(), make_user(), make_user(active=False)]
    make_user()  # on the page, not ticked
    job = confirm_and_apply(admin_client, "invite", {"pk": [u.pk for u in ticked], "select_all": ""})
    audit = audit_of(job)
    assert audit.target_summary == "Send VPP invitation to 3 selected users"
    assert audit.outcome == f"Job #{job.pk} queued: 2 to act on, 1 skipped."
    assert audit.count == 2
    assert job.selection == {"ids": sorted(u.pk for u in ticked)}


def test_a_job_of_all_matching_names_the_count_and_the_filter_with_its_labels(admin_client):
    macs = [make_user(platform=Platform.MACOS) for _ in range(3)]
    make_user(platform=Platform.IOS)
    VppUser.objects.create(user=macs[0], status=VppUserStatus.ASSOCIATED)
    posted = {"select_all": "1", "platform": "macos", "pk": [macs[0].pk]}  # ticked rows do not count with "all"
    job = confirm_and_apply(admin_client, "invite", posted)
    audit = audit_of(job)
    assert audit.target_summary == "Send VPP invitation to all 3 users matching platform=macOS"
    assert audit.outcome == f"Job #{job.pk} queued: 2 to act on, 1 skipped."
    assert job.selection == {"all_matching": True, "filter": {"platform": "macos"}}


def test_every_filter_of_the_page_reads_in_the_audit_text(admin_client):
    alphas = [make_user(name=f"Alpha {n}", platform=Platform.MACOS) for n in range(2)]
    make_user(name="Alpha Phone", platform=Platform.IOS)
    for user in alphas:
        VppUser.objects.create(user=user, status=VppUserStatus.INVITED, invite_code="c")
    posted = {"select_all": "1", "q": "Alpha", "platform": "macos", "vpp_status": "invited", "activated": "yes"}
    job = confirm_and_apply(admin_client, "delete", posted, understood="yes")
    assert audit_of(job).target_summary == (
        'Delete all 2 users matching q="Alpha", platform=macOS, vpp_status=Invited, activated=yes from VPP'
    )
    assert job.selection == {
        "all_matching": True,
        "filter": {"q": "Alpha", "platform": "macos", "vpp_status": "invited", "activated": "yes"},
    }


def test_a_retry_names_the_job_whose_failed_users_it_retries(admin_client):
    users = [make_user() for _ in range(5)]
    job = Job.objects.create(action=JobAction.SYNC, status=JobStatus.DONE, total=5)
    for n, user in enumerate(users):
        status = ItemStatus.FAILED if n < 4 else ItemStatus.SUCCEEDED
        JobItem.objects.create(job=job, user=user, user_label=user.display_name, status=status)
    admin_client.post(f"/vpp/jobs/{job.pk}/retry-failed/")
    retry = Job.objects.get(retry_of=job)
    assert audit_of(retry).target_summary == f"Sync VPP for 4 users, the failed ones of job #{job.pk}"
    assert retry.selection == {"ids": sorted(u.pk for u in users[:4]), "retry_of": job.pk}


def test_behind_the_proxy_the_audit_records_the_clients_address_not_the_proxys(admin_client, settings):
    # BEHIND_PROXY=1 (kmconsole/settings.py): the right-most X-Forwarded-For entry, as for login throttling.
    settings.AXES_IPWARE_META_PRECEDENCE_ORDER = ("HTTP_X_FORWARDED_FOR", "REMOTE_ADDR")
    settings.AXES_IPWARE_PROXY_ORDER = "right-most"
    admin_client.defaults.update(REMOTE_ADDR="172.18.0.2", HTTP_X_FORWARDED_FOR="10.6.6.6, 203.0.113.77")
    job = confirm_and_apply(admin_client, "invite", {"pk": [make_user().pk], "select_all": ""})
    assert audit_of(job).ip == "203.0.113.77"
