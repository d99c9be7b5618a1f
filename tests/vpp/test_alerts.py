"""Issue 12: alerts before things break — once per change of state, audited, emailed, bannered."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.contrib.auth.models import Permission
from django.contrib.auth.models import User as Admin
from django.core import mail

from vpp import secrets
from vpp.models import AlertSetting, AuditEvent, Job, JobAction, JobStatus, TokenHealth, VppServerSetting
from vpp.services import alerts
from vpp.tasks import sync_tick

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 11, 1, 12, tzinfo=dt.UTC)


@pytest.fixture
def token():
    setting = VppServerSetting.load()
    setting.content_token_encrypted = secrets.encrypt("token")
    setting.token_org_name = "Acme"
    setting.token_health = TokenHealth.VALID
    setting.token_expires_at = NOW + dt.timedelta(days=40)
    setting.save()
    return setting


@pytest.fixture
def settings_admin():
    admin = Admin.objects.create_user("owner", email="owner@acme.test", password="pw-0123456789")
    admin.user_permissions.add(Permission.objects.get(codename="change_vppserversetting"))
    Admin.objects.create_user("viewer", email="viewer@acme.test")  # no permission: no email
    return admin


def at(days: float) -> dt.datetime:
    """The instant ``days`` before the token expires."""
    return NOW + dt.timedelta(days=40 - days)


def sent_alerts() -> list[str]:
    return list(
        AuditEvent.objects.filter(action="vpp.alert_sent").order_by("pk").values_list("target_summary", flat=True)
    )


def test_the_token_alerts_go_out_once_at_30_7_and_1_days_and_at_expiry(token, settings_admin):
    assert alerts.alerts_check(now=at(31)) == []
    for days, state in ((29.5, "expires_30"), (6.5, "expires_7"), (0.5, "expires_1"), (-0.1, "expired")):
        [alert] = alerts.alerts_check(now=at(days))
        assert alert.state == state
        assert alerts.alerts_check(now=at(days)) == []  # once per state
    assert len(mail.outbox) == 4
    assert mail.outbox[0].to == ["owner@acme.test"]
    assert "expires within 30 days" in mail.outbox[0].body and "Acme" in mail.outbox[0].body
    assert len(sent_alerts()) == 4 and "has expired" in sent_alerts()[-1]


@pytest.mark.parametrize("health", [TokenHealth.REVOKED, TokenHealth.OTHER_MDM])
def test_a_revoked_or_taken_token_alerts_and_a_fixed_one_rearms(token, settings_admin, health):
    token.token_health, token.other_mdm_name = health, "Other MDM Inc."
    token.save()
    [alert] = alerts.alerts_check(now=NOW)
    assert alert.state == health
    token.token_health = TokenHealth.VALID
    token.save()
    assert alerts.alerts_check(now=NOW) == []
    assert AlertSetting.load().token_state == "ok"
    token.token_health = health
    token.save()
    assert len(alerts.alerts_check(now=NOW)) == 1  # a new change of state: alerted again


@time_machine.travel(NOW, tick=False)
def test_three_failed_scheduled_syncs_in_a_row_alert_from_the_beat_tick(token, settings_admin):
    for _ in range(2):
        Job.objects.create(action=JobAction.SYNC_ALL, status=JobStatus.FAILED, selection={"trigger": "schedule"})
    Job.objects.create(action=JobAction.SYNC_ALL, status=JobStatus.FAILED, selection={"trigger": "manual"})
    sync_tick()
    assert mail.outbox == []
    Job.objects.create(action=JobAction.SYNC_ALL, status=JobStatus.FAILED, selection={"trigger": "schedule"})
    sync_tick()
    sync_tick()
    [message] = mail.outbox
    assert "failed 3 runs in a row" in message.body
    assert AlertSetting.load().sync_state == alerts.SYNC_FAILED


def test_alerts_off_records_without_email_and_recipients_replace_the_admins(token, settings_admin):
    alerts.alerts_update(enabled=False, recipients="", actor=settings_admin)
    alerts.alerts_check(now=at(20))
    assert mail.outbox == [] and "alerts are off" in AuditEvent.objects.get(action="vpp.alert_sent").outcome
    alerts.alerts_update(enabled=True, recipients="ops@acme.test, oncall@acme.test", actor=settings_admin)
    alerts.alerts_check(now=at(5))
    assert mail.outbox[0].to == ["ops@acme.test", "oncall@acme.test"]
    with pytest.raises(alerts.RecipientsInvalid):
        alerts.alerts_update(enabled=True, recipients="not an address", actor=settings_admin)
    assert AlertSetting.load().recipient_list == ["ops@acme.test", "oncall@acme.test"]
    changed = AuditEvent.objects.filter(action="vpp.alerts_changed").order_by("pk").last()
    assert changed.target_summary == "Turned alerts on; recipients: ops@acme.test, oncall@acme.test."


def test_a_mail_server_that_refuses_is_tried_again_at_the_next_tick(token, settings_admin, monkeypatch):
    def refuse(self, fail_silently=False):
        raise OSError("connection refused")

    monkeypatch.setattr("django.core.mail.EmailMessage.send", refuse)
    assert alerts.alerts_check(now=at(20)) == []
    assert AlertSetting.load().token_state == "ok"
    monkeypatch.undo()
    assert len(alerts.alerts_check(now=at(20))) == 1


@time_machine.travel(NOW, tick=False)
def test_the_banner_shows_admins_who_can_act(client, token, settings_admin):
    for _ in range(3):
        Job.objects.create(action=JobAction.SYNC_ALL, status=JobStatus.FAILED, selection={"trigger": "schedule"})
    alerts.alerts_check(now=NOW)
    client.force_login(settings_admin)
    assert "failed 3 runs in a row" in client.get("/users/").content.decode()
    client.force_login(Admin.objects.get(username="viewer"))
    assert "failed 3 runs in a row" not in client.get("/users/").content.decode()


def test_the_setting_page_saves_the_alerts(client, settings_admin):
    client.force_login(settings_admin)
    url = "/setting/ios-macos/vpp-server/"
    response = client.post(url, {"section": "alerts", "alerts-recipients": "bad"})
    assert response.status_code == 422 and "is not an email address" in response.content.decode()
    data = {"section": "alerts", "alerts-enabled": "on", "alerts-recipients": "ops@acme.test"}
    assert client.post(url, data).status_code == 302
    assert (AlertSetting.load().enabled, AlertSetting.load().recipients) == (True, "ops@acme.test")
