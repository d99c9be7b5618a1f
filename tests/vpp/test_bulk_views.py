"""Bulk VPP actions over HTTP: selection, confirmation, permissions, job pages."""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import urlencode

import pytest
from celery import current_app
from django.contrib.auth.models import Permission
from django.contrib.auth.models import User as Admin
from kombu.exceptions import OperationalError

from tests.support.users import make_user
from users.models import User
from vpp.models import (
    AssignmentMethod,
    AuditEvent,
    ItemStatus,
    Job,
    JobAction,
    JobItem,
    JobStatus,
    VppServerSetting,
    VppUser,
    VppUserStatus,
)

pytestmark = pytest.mark.django_db

CONFIRM = "/vpp/bulk/{}/confirm/"
APPLY = "/vpp/bulk/{}/apply/"


def admin_with(*codenames) -> Admin:
    admin = Admin.objects.create_user(f"admin{Admin.objects.count()}", password="pw-0123456789")
    admin.user_permissions.add(*Permission.objects.filter(content_type__app_label="vpp", codename__in=codenames))
    return admin


@pytest.fixture
def admin_client(client, token_setting):
    client.force_login(admin_with("invite_vppuser", "delete_vppuser", "sync_vppuser"))
    return client


@pytest.fixture
def no_enqueue(monkeypatch):
    sent = []
    monkeypatch.setattr(current_app, "send_task", lambda name, args: sent.append(args))
    return sent


def post(client, action, data, step="confirm", **extra):
    """As htmx sends it: application/x-www-form-urlencoded. An apply carries the plan token the
    confirmation of the same data gave (none when it refused), as the modal does."""
    url = (CONFIRM if step == "confirm" else APPLY).format(action)
    if step == "apply" and "plan" not in data:
        data = {**data, "plan": plan_token_of(post(client, action, data))}
    body = urlencode(data, doseq=True)
    return client.post(url, body, content_type="application/x-www-form-urlencoded", HTTP_HX_REQUEST="true", **extra)


def plan_token_of(confirmation) -> str:
    found = re.search(r'<input type="hidden" name="plan" value="([^"]*)">', confirmation.content.decode())
    return unescape(found.group(1)) if found else ""


def test_it_confirms_with_counts_and_skip_reasons(admin_client):
    ok = make_user()
    no_device = make_user(devices=())
    inactive = make_user(active=False)
    response = post(admin_client, "invite", {"pk": [ok.pk, no_device.pk, inactive.pk]})
    html = response.content.decode()
    assert response.status_code == 200
    assert "1 user</strong>" in html
    assert "No activated iOS/macOS device" in html and "Inactive user" in html
    assert "Send 1 invitation" in html
    assert not Job.objects.exists()  # nothing happens without the confirmation


def test_it_creates_the_job_items_and_audit_in_one_go_and_enqueues_after_commit(
    admin_client, no_enqueue, django_capture_on_commit_callbacks
):
    users = [make_user() for _ in range(3)] + [make_user(devices=())]
    with django_capture_on_commit_callbacks(execute=True):
        response = post(admin_client, "invite", {"pk": [u.pk for u in users]}, step="apply")
    assert response.status_code == 200
    job = Job.objects.get()
    assert (job.action, job.total, job.skipped) == (JobAction.INVITE, 4, 1)
    assert JobItem.objects.filter(job=job, status=ItemStatus.PENDING).count() == 3
    assert AuditEvent.objects.get(job=job).count == 3
    assert no_enqueue == [[job.pk]]
    assert f'hx-get="/vpp/jobs/{job.pk}/panel/"' in response.content.decode()


def test_it_reapplies_the_filter_server_side_for_select_all(admin_client, no_enqueue):
    matching = [make_user(name=f"Alpha {n}") for n in range(3)]
    make_user(name="Beta")
    response = post(admin_client, "invite", {"select_all": "1", "q": "Alpha", "pk": [1]}, step="apply")
    assert response.status_code == 200
    job = Job.objects.get()
    assert set(JobItem.objects.filter(job=job).values_list("user_id", flat=True)) == {u.pk for u in matching}
    assert job.selection == {"all_matching": True, "filter": {"q": "Alpha"}}


def test_it_ignores_unknown_ids_and_refuses_tampered_ones(admin_client, no_enqueue):
    user = make_user()
    response = post(admin_client, "invite", {"pk": [user.pk, 999999]})
    assert "1 selected user no longer exists" in response.content.decode()
    response = post(admin_client, "invite", {"pk": [user.pk, "1 OR 1=1"]}, step="apply")
    assert "not understood" in response.content.decode()
    assert not Job.objects.exists()


def test_it_accepts_more_ids_than_djangos_field_limit(admin_client, no_enqueue):
    user = make_user()
    ids = [user.pk, *range(10_000_000, 10_001_500)]
    response = post(admin_client, "invite", {"pk": ids})
    assert response.status_code == 200
    assert "1 user</strong>" in response.content.decode()


def test_it_caps_an_absurd_number_of_ids_with_a_message(admin_client):
    response = post(admin_client, "invite", {"pk": list(range(1, 6000))})
    assert response.status_code == 422
    assert "Too many users were ticked" in response.content.decode()


def test_it_needs_an_explicit_ok_to_delete(admin_client, no_enqueue):
    user = make_user()
    VppUser.objects.create(user=user, status=VppUserStatus.INVITED)
    response = post(admin_client, "delete", {"pk": [user.pk]})
    assert "I understand" in response.content.decode()
    response = post(admin_client, "delete", {"pk": [user.pk]}, step="apply")
    assert "Tick the box" in response.content.decode()
    assert not Job.objects.exists()
    post(admin_client, "delete", {"pk": [user.pk], "understood": "yes"}, step="apply")
    assert Job.objects.get().action == JobAction.DELETE


@pytest.mark.parametrize("action", ["invite", "delete", "sync"])
def test_it_checks_the_permission_of_each_action(client, token_setting, action, no_enqueue):
    others = {"invite": "invite_vppuser", "delete": "delete_vppuser", "sync": "sync_vppuser"}
    viewer = admin_with(*[code for name, code in others.items() if name != action])
    client.force_login(viewer)
    user = make_user()
    for step in ("confirm", "apply"):
        response = post(client, action, {"pk": [user.pk], "understood": "yes"}, step=step)
        assert response.status_code == 403
        assert "You do not have permission" in response.content.decode()
    assert not Job.objects.exists()


def test_a_viewer_can_see_the_job_pages(client, token_setting):
    client.force_login(admin_with())
    job = Job.objects.create(action=JobAction.INVITE, status=JobStatus.DONE, total=1)
    assert client.get("/vpp/jobs/").status_code == 200
    assert client.get(f"/vpp/jobs/{job.pk}/").status_code == 200


def test_it_says_how_to_get_a_token_when_none_is_uploaded(client, no_enqueue):
    client.force_login(admin_with("invite_vppuser"))
    user = make_user()
    html = post(client, "invite", {"pk": [user.pk]}).content.decode()
    assert "Upload a content token in Setting › iOS/macOS › VPP Server Setting" in html
    assert 'href="/setting/ios-macos/vpp-server/"' in html
    post(client, "invite", {"pk": [user.pk]}, step="apply")
    assert not Job.objects.exists()


def test_it_disables_user_actions_with_device_based_assignment(admin_client, token_setting):
    VppServerSetting.objects.filter(pk=1).update(assignment_method=AssignmentMethod.DEVICE)
    html = post(admin_client, "invite", {"pk": [make_user().pk]}).content.decode()
    assert "device-based assignment" in html


@pytest.mark.parametrize(
    ("health", "says"),
    [("revoked", "revoked (Apple error 9625)"), ("expired", "expired (Apple error 9621)"), ("other_mdm", "managed by")],
)
def test_it_refuses_actions_while_the_token_is_unusable(admin_client, no_enqueue, health, says):
    VppServerSetting.objects.filter(pk=1).update(token_health=health)
    user = make_user()
    html = post(admin_client, "invite", {"pk": [user.pk]}).content.decode()
    assert says in html
    post(admin_client, "invite", {"pk": [user.pk]}, step="apply")
    assert not Job.objects.exists()


def test_a_broker_outage_keeps_the_job_and_says_so(admin_client, monkeypatch, django_capture_on_commit_callbacks):
    def down(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(current_app, "send_task", down)
    with django_capture_on_commit_callbacks(execute=True):
        response = post(admin_client, "invite", {"pk": [make_user().pk]}, step="apply")
    job = Job.objects.get()
    assert job.enqueue_error
    panel = admin_client.get(f"/vpp/jobs/{job.pk}/panel/", HTTP_HX_REQUEST="true").content.decode()
    # The broker is named, with since when and what happens next (not "started", not Apple).
    assert "The message broker (" in panel and "is unreachable (OperationalError)" in panel
    assert "continues by itself once the broker is back" in panel
    assert "Apple" not in panel
    assert response.status_code == 200


def test_the_panel_polls_until_the_job_ends(admin_client):
    job = Job.objects.create(action=JobAction.INVITE, status=JobStatus.RUNNING, total=2)
    response = admin_client.get(f"/vpp/jobs/{job.pk}/panel/", HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and 'hx-trigger="every 1s"' in response.content.decode()
    Job.objects.filter(pk=job.pk).update(status=JobStatus.DONE)
    response = admin_client.get(f"/vpp/jobs/{job.pk}/panel/", HTTP_HX_REQUEST="true")
    assert response.status_code == 286 and "hx-trigger" not in response.content.decode()


def test_the_panel_shows_apples_wait(admin_client):
    from datetime import timedelta

    from django.utils import timezone

    until = timezone.now() + timedelta(minutes=2)
    job = Job.objects.create(action=JobAction.INVITE, status=JobStatus.RUNNING, total=2, retry_after_until=until)
    html = admin_client.get(f"/vpp/jobs/{job.pk}/panel/").content.decode()
    assert f"Apple asked us to wait. Next try at {until:%H:%M:%S} UTC. The job continues by itself." in html


def test_the_job_page_lists_results_exports_csv_and_retries_failed_only(admin_client, no_enqueue):
    ok, bad = make_user(name="Ok"), make_user(name="=Bad")
    job = Job.objects.create(action=JobAction.INVITE, status=JobStatus.DONE, total=2, channel="email")
    JobItem.objects.create(job=job, user=ok, user_label="Ok", status=ItemStatus.SUCCEEDED)
    JobItem.objects.create(
        job=job,
        user=bad,
        user_label="=Bad",
        status=ItemStatus.FAILED,
        error_number=9603,
        reason="Apple had an internal error; try again later.",
    )
    html = admin_client.get(f"/vpp/jobs/{job.pk}/").content.decode()
    assert "9603" in html and "Apple had an internal error" in html and "Retry failed only (1)" in html
    csv_text = b"".join(admin_client.get(f"/vpp/jobs/{job.pk}/export.csv").streaming_content).decode()
    assert "'=Bad,failed,9603" in csv_text  # no spreadsheet formula injection
    response = admin_client.post(f"/vpp/jobs/{job.pk}/retry-failed/")
    retry = Job.objects.exclude(pk=job.pk).get()
    assert response.status_code == 302 and response["Location"] == f"/vpp/jobs/{retry.pk}/"
    assert list(JobItem.objects.filter(job=retry).values_list("user_id", flat=True)) == [bad.pk]
    assert retry.retry_of == job
    assert User.objects.count() == 2


def test_the_users_page_shows_and_filters_by_vpp_status(admin_client):
    make_user(name="Invited One", vpp_status=VppUserStatus.INVITED, vpp_fields={"invite_code": "c"})
    make_user(name="Never Invited")
    html = admin_client.get("/users/").content.decode()
    assert "Send VPP invitation" in html and 'name="vpp_status"' in html
    assert ">Invited</span>" in html and "Not a VPP user</span>" in html
    html = admin_client.get("/users/?vpp_status=invited").content.decode()
    assert "Invited One" in html and "Never Invited" not in html
    html = admin_client.get("/users/?vpp_status=none").content.decode()
    assert "Invited One" not in html and "Never Invited" in html


def test_the_toolbar_says_why_actions_are_off(client, token_setting):
    client.force_login(admin_with())
    html = client.get("/users/").content.decode()
    denied = "Send VPP invitation, Delete from VPP, Sync VPP, Link Managed Apple Accounts"
    assert f"Your role does not allow: {denied}." in html
    VppServerSetting.objects.filter(pk=1).update(assignment_method=AssignmentMethod.DEVICE)
    html = client.get("/users/").content.decode()
    assert "device-based assignment" in html


def test_the_users_page_vpp_status_cell_shows_each_status_and_escapes_apple_errors(admin_client):
    rows = {
        VppUserStatus.PENDING: ("badge-warn", "Pending"),
        VppUserStatus.INVITED: ("badge-info", "Invited"),
        VppUserStatus.ASSOCIATED: ("badge-ok", "Associated"),
        VppUserStatus.RETIRED: ("badge-muted", "Retired"),
    }
    for status in rows:
        make_user(
            name=f"User {status}",
            vpp_status=status,
            vpp_fields={"last_error_message": '<b>"9609"</b>' if status == VppUserStatus.RETIRED else ""},
        )
    html = admin_client.get("/users/").content.decode()
    for tone, label in rows.values():
        assert f'<span class="badge vpp-status {tone}"' in html and f">{label}</span>" in html
    assert 'title="Last Apple error: &lt;b&gt;&quot;9609&quot;&lt;/b&gt;"' in html
    assert "<b>" not in html


def test_an_apply_that_loses_the_race_to_another_request_is_a_409_with_the_reason(
    admin_client, no_enqueue, monkeypatch
):
    from tests.vpp.test_job_conflict import the_other_request_wins

    user = make_user()
    token = plan_token_of(post(admin_client, "invite", {"pk": [user.pk]}))
    the_other_request_wins(monkeypatch, user)
    response = post(admin_client, "invite", {"pk": [user.pk], "plan": token}, step="apply")
    assert response.status_code == 409
    assert "Another request is starting a job for some of these users" in response.content.decode()
    assert not Job.objects.exists() and not no_enqueue
