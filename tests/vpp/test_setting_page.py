"""The VPP Server Setting page: read-only vs change permission, forms, preview, banner."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.core import mail
from django.urls import reverse

from vpp import secrets
from vpp.models import AssignmentMethod, AuditEvent, SyncSchedule, TokenHealth, VppServerSetting
from vpp.selectors import vpp_actions_disabled_reason

pytestmark = pytest.mark.django_db
URL = reverse("vpp:server-setting")


@pytest.fixture
def viewer(client, django_user_model):
    user = django_user_model.objects.create_user("viewer", password=None)
    client.force_login(user)
    return user


def test_it_shows_the_empty_state_without_a_token(client, admin):
    html = client.get(URL).content.decode()
    assert "No content token yet" in html
    assert 'id="token-upload"' in html
    assert "No content token is uploaded yet" in html  # why Sync now is off


def test_it_shows_a_read_only_page_without_the_permission(client, viewer):
    html = client.get(URL).content.decode()
    assert "You can view this page" in html
    assert 'id="token-upload"' not in html and 'id="sync-now"' not in html
    assert client.post(URL, {"section": "assignment", "assignment_method": "device"}).status_code == 403
    assert VppServerSetting.load().assignment_method == AssignmentMethod.USER


def test_it_switches_to_device_assignment_and_disables_vpp_actions(client, admin):
    VppServerSetting.load()
    VppServerSetting.objects.filter(pk=1).update(
        token_health=TokenHealth.VALID, content_token_encrypted=secrets.encrypt("s-token")
    )
    assert vpp_actions_disabled_reason() is None
    response = client.post(URL, {"section": "assignment", "assignment_method": "device"})
    assert response.status_code == 302
    reason = vpp_actions_disabled_reason()
    assert reason and "device-based" in reason
    assert reason in client.get(URL).content.decode()
    assert AuditEvent.objects.filter(action="vpp.assignment_changed", actor=admin).exists()


def test_it_saves_the_schedule_and_applies_it_at_once(client, admin):
    with time_machine.travel(dt.datetime(2026, 10, 24, 12, tzinfo=dt.UTC), tick=False):
        response = client.post(
            URL,
            {
                "section": "schedule",
                "enabled": "on",
                "mode": "daily",
                "interval_hours": "6",
                "time_of_day": "02:30",
                "timezone": "Europe/Berlin",
            },
        )
        html = client.get(URL).content.decode()
    assert response.status_code == 302
    schedule = SyncSchedule.load()
    assert (schedule.enabled, schedule.mode, schedule.timezone) == (True, "daily", "Europe/Berlin")
    assert schedule.next_run_at == dt.datetime(2026, 10, 25, 0, 30, tzinfo=dt.UTC)
    # The console's zone (UTC here) like every time on the page, and the schedule's own zone.
    assert '2026-10-25 00:30 UTC</time> <span class="muted">(2026-10-25 02:30 CEST, Europe/Berlin)' in html
    assert AuditEvent.objects.filter(action="vpp.schedule_changed").exists()


def test_it_refuses_an_unknown_time_zone(client, admin):
    response = client.post(
        URL,
        {
            "section": "schedule",
            "enabled": "on",
            "mode": "daily",
            "interval_hours": "6",
            "time_of_day": "02:30",
            "timezone": "Mars/Base",
        },
    )
    assert response.status_code == 422
    assert SyncSchedule.load().enabled is False


INVITE = {
    "section": "invitations",
    "invitation_channel": "both",
    "invitation_sender": "IT <it@example.com>",
    "invitation_subject": "Apps from {organisation}",
    "invitation_body_text": "Hi {user_name}: {invitation_link}",
    "invitation_body_html": '<p>Hi {user_name}, <a href="{invitation_link}">accept</a></p>',
}


def test_it_saves_invitation_templates(client, admin):
    assert client.post(URL, INVITE).status_code == 302
    setting = VppServerSetting.load()
    assert setting.invitation_channel == "both"
    assert setting.invitation_subject == "Apps from {organisation}"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("invitation_subject", "Hi {name}", "Unknown placeholder {name}"),
        ("invitation_body_text", "Link: {invitation_link", "Braces do not match"),
        ("invitation_body_html", "<p>{}</p>", "Unknown placeholder {}"),
        ("invitation_body_text", "{user_name!r}", "takes no format options"),
    ],
)
def test_it_refuses_unknown_placeholders(client, admin, field, value, message):
    response = client.post(URL, {**INVITE, field: value})
    assert response.status_code == 422
    assert message in response.content.decode()
    assert VppServerSetting.load().invitation_subject != "Apps from {organisation}"


def test_it_previews_the_invitation_with_escaped_sample_values(client, admin):
    data = {**INVITE, "invitation_body_text": "Hi {user_name} {{x}} {invitation_link}"}
    response = client.post(reverse("vpp:invitation-preview"), data, HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="invitation-preview"' in html and "<html" not in html
    assert "Hi Alex Example {x}" in html
    assert "Apps from Example Org" in html
    bad = client.post(reverse("vpp:invitation-preview"), {**INVITE, "invitation_subject": "{nope}"})
    assert "Unknown placeholder {nope}" in bad.content.decode()


def test_it_sends_a_test_invitation_to_the_admin(client, admin, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    client.post(URL, INVITE)
    response = client.post(URL, {**INVITE, "send_test": "1"})
    assert response.status_code == 302
    [message] = mail.outbox
    assert message.to == ["admin@example.com"]
    assert message.from_email == "IT <it@example.com>"
    # The real subject (issue 9: the test is the real message); a header marks it a test.
    assert message.subject == "Apps from Example Org"
    assert message.extra_headers["X-Kmconsole-Test"] == "1"
    assert "inviteCode=SAMPLE" in message.body
    assert "<a href=" in message.alternatives[0][0]


@pytest.mark.parametrize(
    ("health", "text"),
    [
        (TokenHealth.EXPIRED, "expired (Apple error 9621)"),
        (TokenHealth.REVOKED, "revoked (Apple error 9625)"),
        (TokenHealth.OTHER_MDM, "managed by Other MDM"),
        (TokenHealth.EXPIRING, "expires in 12 days"),
    ],
)
def test_it_shows_the_token_banner_on_every_page(client, admin, health, text):
    VppServerSetting.load()
    VppServerSetting.objects.filter(pk=1).update(
        token_health=health,
        other_mdm_name="Other MDM",
        token_health_detail="The token expires in 12 days; renew it soon.",
    )
    html = client.get(reverse("users:list")).content.decode()
    assert "console-banner" in html and text in html


def test_it_shows_no_banner_for_a_healthy_token(client, admin):
    VppServerSetting.load()
    VppServerSetting.objects.filter(pk=1).update(token_health=TokenHealth.VALID)
    assert "console-banner" not in client.get(reverse("users:list")).content.decode()


def test_it_wants_https_for_a_public_notification_address(client, admin):
    response = client.post(URL, {"section": "notifications", "public_url": "http://console.example.com"})
    assert response.status_code == 422
    assert "only delivers notifications to HTTPS" in response.content.decode()


def test_it_needs_a_token_before_configuring_notifications(client, admin):
    response = client.post(URL, {"section": "notifications", "public_url": "https://console.example.com"})
    assert response.status_code == 422
    assert "Upload a content token first" in response.content.decode()
    assert VppServerSetting.load().notification_url == ""


def test_it_refuses_sync_now_without_a_usable_token(client, admin):
    response = client.post(URL, {"section": "sync_now"}, follow=True)
    assert "Sync not started: No content token" in response.content.decode()


@pytest.mark.parametrize(
    ("phase", "says"),
    [("push", "sending changed emails to Apple"), ("retire", "retiring departed users"), ("read_all", "reading Apple")],
)
def test_a_running_sync_says_what_it_is_doing_in_words(client, admin, phase, says):
    from vpp.models import Job, JobAction, JobStatus

    job = Job.objects.create(action=JobAction.SYNC_ALL, status=JobStatus.RUNNING, phase=phase)
    SyncSchedule.load()
    SyncSchedule.objects.filter(pk=1).update(running_job_id=job.pk, last_job_id=job.pk)
    client.force_login(admin)
    html = client.get(reverse("vpp:sync-status")).content.decode()
    assert f"job #{job.pk}</a> is running: {says}" in html.replace("&#x27;", "'")
    assert f"({phase})" not in html


def test_the_schedule_keeps_the_stored_value_of_the_mode_not_chosen(client, admin):
    """The field of the other mode is disabled in the browser, so it is not posted: not an error."""
    response = client.post(
        URL, {"section": "schedule", "enabled": "on", "mode": "interval", "interval_hours": "6", "timezone": "UTC"}
    )
    assert response.status_code == 302
    schedule = SyncSchedule.load()
    assert (schedule.mode, schedule.interval_hours, schedule.time_of_day) == ("interval", 6, dt.time(3, 0))
    response = client.post(URL, {"section": "schedule", "mode": "daily", "interval_hours": "6", "timezone": "UTC"})
    assert response.status_code == 422
    assert "This field is required" in response.content.decode()
