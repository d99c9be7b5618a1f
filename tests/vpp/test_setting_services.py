"""The services behind the VPP Server Setting page's cards: each saves, audits, and refuses bad input."""

from __future__ import annotations

import datetime as dt
import smtplib
import socket

import pytest
import time_machine
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.urls import reverse

from vpp import forms as f
from vpp.invitations.message import TemplateError
from vpp.models import AssignmentMethod, AuditEvent, ScheduleMode, SyncSchedule, VppServerSetting
from vpp.services import invitation_settings as inv
from vpp.services import schedule as sched
from vpp.services.setting import assignment_update

pytestmark = pytest.mark.django_db
URL = reverse("vpp:server-setting")


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("pk"))


# --- assignment -------------------------------------------------------------------------


def test_assignment_update_saves_and_audits_the_change_once(admin):
    setting = assignment_update(method=AssignmentMethod.DEVICE, actor=admin)
    assert setting.assignment_method == VppServerSetting.load().assignment_method == AssignmentMethod.DEVICE
    [event] = events("vpp.assignment_changed")
    assert (event.actor, event.actor_name, event.target_summary) == (
        admin,
        "admin",
        "Changed the assignment method from user to device.",
    )
    assignment_update(method=AssignmentMethod.DEVICE, actor=admin)  # no change: nothing to audit
    assert len(events("vpp.assignment_changed")) == 1


def test_assignment_update_refuses_an_unknown_method(admin):
    with pytest.raises(ValueError, match="unknown assignment method"):
        assignment_update(method="serial", actor=admin)
    assert VppServerSetting.load().assignment_method == AssignmentMethod.USER
    assert events("vpp.assignment_changed") == []


# --- invitation settings ----------------------------------------------------------------

TEMPLATES = {
    "channel": "both",
    "sender": "IT <it@example.com>",
    "subject": "Apps from {organisation}",
    "body_text": "Hi {user_name}: {invitation_link}",
    "body_html": '<p><a href="{invitation_link}">accept</a></p>',
}


def test_invitation_settings_update_stores_the_templates_and_names_the_changed_fields(admin):
    inv.invitation_settings_update(**TEMPLATES, actor=admin)
    setting = VppServerSetting.load()
    assert (setting.invitation_channel, setting.invitation_sender) == ("both", "IT <it@example.com>")
    assert setting.invitation_body_html == TEMPLATES["body_html"]
    inv.invitation_settings_update(**{**TEMPLATES, "subject": "New {organisation}"}, actor=admin)
    first, second = events("vpp.invitation_changed")
    assert first.target_summary == (
        "Changed the invitation settings: channel, sender, subject, plain-text body, HTML body."
    )
    assert second.target_summary == "Changed the invitation settings: subject."
    assert second.actor == admin
    # The text of a template is never written to the audit trail.
    assert all("{organisation}" not in event.target_summary for event in (first, second))


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("subject", "Hi {name}", TemplateError),
        ("body_html", "<p>{invitation_link</p>", TemplateError),
        ("channel", "fax", ValueError),
    ],
)
def test_invitation_settings_update_refuses_bad_input_and_stores_nothing(admin, field, value, error):
    with pytest.raises(error):
        inv.invitation_settings_update(**{**TEMPLATES, field: value}, actor=admin)
    assert VppServerSetting.load().invitation_channel == "email"
    assert events("vpp.invitation_changed") == []


def test_saving_a_card_does_not_write_back_what_a_sync_changed_meanwhile(client, admin, monkeypatch):
    """The page loads the setting at the start of the request; the service must not save that stale copy."""
    VppServerSetting.load()
    original_clean = f.AssignmentForm.clean

    def clean_while_a_sync_finishes(form):
        VppServerSetting.objects.filter(pk=1).update(users_version_id="v-from-the-sync")
        return original_clean(form)

    monkeypatch.setattr(f.AssignmentForm, "clean", clean_while_a_sync_finishes)
    assert client.post(URL, {"section": "assignment", "assignment_method": "device"}).status_code == 302
    setting = VppServerSetting.load()
    assert (setting.assignment_method, setting.users_version_id) == ("device", "v-from-the-sync")


# --- schedule ---------------------------------------------------------------------------

DAILY = sched.ScheduleInput(
    enabled=True, mode=ScheduleMode.DAILY, interval_hours=24, time_of_day=dt.time(2, 30), timezone="Europe/Berlin"
)


def test_schedule_update_audits_old_and_new_values_with_the_actor(admin):
    with time_machine.travel(dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC), tick=False):
        sched.schedule_update(data=DAILY, actor=admin)
        sched.schedule_update(data=DAILY, actor=admin)  # the same values: nothing to audit
    [event] = events("vpp.schedule_changed")
    assert event.actor == admin
    assert event.target_summary.startswith("Changed the automatic sync: sync automatically False → True")
    assert "daily at 03:00:00 → 02:30:00" in event.target_summary
    assert "time zone UTC → Europe/Berlin" in event.target_summary


def test_schedule_update_refuses_an_unknown_time_zone(admin):
    with pytest.raises(sched.UnknownTimeZone):
        sched.schedule_update(data=sched.ScheduleInput(**{**DAILY.__dict__, "timezone": "Mars/Base"}), actor=admin)
    assert SyncSchedule.load().enabled is False
    assert events("vpp.schedule_changed") == []


# --- "Send test to me" ------------------------------------------------------------------


@pytest.fixture
def outbox(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    return mail.outbox


class RefusingBackend(BaseEmailBackend):
    """A mail server that refuses every recipient (550)."""

    def send_messages(self, messages):
        raise smtplib.SMTPRecipientsRefused({m.to[0]: (550, b"5.1.1 no such mailbox") for m in messages})


def test_invitation_test_send_mails_the_admin(admin, outbox):
    admin.first_name, admin.last_name = "Ada", "Admin"
    sent = inv.invitation_test_send(actor=admin)
    [message] = outbox
    assert message.to == sent.to == ["admin@example.com"]
    assert "Ada Admin" in message.body


def test_invitation_test_send_needs_an_address(admin, outbox):
    admin.email = ""
    with pytest.raises(inv.InvitationTestNotSent) as caught:
        inv.invitation_test_send(actor=admin)
    assert caught.value.reason == "Your admin account has no email address to send the test to."
    assert outbox == []


def test_invitation_test_send_reports_a_refusing_mail_server(admin, settings):
    settings.EMAIL_BACKEND = f"{__name__}.RefusingBackend"
    with pytest.raises(inv.InvitationTestNotSent, match=r"could not be sent.*no such mailbox"):
        inv.invitation_test_send(actor=admin)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_send_test_shows_an_unreachable_mail_server_instead_of_failing(client, admin, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", _closed_port(), 2
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    response = client.post(URL, {"send_test": "1"}, follow=True)
    assert response.status_code == 200
    assert "The test invitation could not be sent" in response.content.decode()
