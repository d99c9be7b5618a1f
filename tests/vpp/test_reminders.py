"""Issue 13: invitation reminders against the sandbox over real HTTP, with time travelled (time-machine).

Off by default; after N days without acceptance the invitation again, at most M times, the
first by push when escalating; never for an associated user; never twice to one user in one
round, whatever the redeliveries (a second tick, a task run again).
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
import time_machine
from django.core import mail
from django.utils import timezone

from tests.support.job_loop import run_job
from tests.vpp.test_job_sandbox import start
from vpp.content_token import vpp_client
from vpp.models import (
    AuditEvent,
    InvitationDelivery,
    ItemStatus,
    Job,
    JobAction,
    JobItem,
    JobStatus,
    VppServerSetting,
    VppUser,
    VppUserStatus,
)
from vpp.services import notifications
from vpp.services.reminders import reminders_tick

pytestmark = [pytest.mark.django_db, pytest.mark.sandbox]

START = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def traveller():
    with time_machine.travel(START, tick=True) as traveller:
        yield traveller


def invite(users, setting):
    job = run_job(start(JobAction.INVITE, users), vpp_client(setting))
    assert job.succeeded == len(users)
    mail.outbox.clear()
    return job


def reminders_on(days=3, most=2, escalate=False):
    VppServerSetting.objects.filter(pk=1).update(
        reminders_enabled=True, reminder_after_days=days, reminder_max=most, reminder_escalate=escalate
    )


def test_reminders_are_off_by_default(traveller, sandbox_setting, user_factory):
    invite([user_factory()], sandbox_setting)
    traveller.shift(dt.timedelta(days=30))
    assert reminders_tick() is None
    assert not Job.objects.filter(action=JobAction.REMINDERS).exists()


def test_after_n_days_at_most_m_reminders_never_twice_in_a_round(traveller, sandbox_setting, user_factory):
    waiting = user_factory(email="waiting@example.com")
    invite([waiting], sandbox_setting)
    reminders_on(days=3, most=2)

    traveller.shift(dt.timedelta(days=2))
    assert reminders_tick() is None  # not yet N days

    traveller.shift(dt.timedelta(days=1, minutes=1))
    job = reminders_tick()
    assert job is not None and job.action == JobAction.REMINDERS
    assert reminders_tick() is None  # the tick delivered again: no second round
    job = run_job(job, vpp_client(sandbox_setting))
    assert (job.status, job.succeeded) == (JobStatus.DONE, 1)
    assert [m.to for m in mail.outbox] == [["waiting@example.com"]]
    code = VppUser.objects.get(user=waiting).invite_code
    assert code in mail.outbox[0].body
    assert JobItem.objects.get(job=job).reason == "Reminder 1 of 2 sent (email)."
    assert AuditEvent.objects.filter(job=job, action="vpp.reminders").exists()
    assert reminders_tick() is None  # just reminded: the next one is N days away

    traveller.shift(dt.timedelta(days=3, minutes=1))
    run_job(reminders_tick(), vpp_client(sandbox_setting))
    traveller.shift(dt.timedelta(days=3, minutes=1))
    assert reminders_tick() is None  # M reached
    vpp_user = VppUser.objects.get(user=waiting)
    assert (vpp_user.reminders_sent, len(mail.outbox)) == (2, 2)
    assert vpp_user.status == VppUserStatus.INVITED


def test_a_round_run_again_sends_nothing_twice(traveller, sandbox_setting, user_factory):
    users = [user_factory(email=f"again{n}@example.com") for n in range(2)]
    invite(users, sandbox_setting)
    reminders_on(days=1)
    traveller.shift(dt.timedelta(days=1, minutes=1))
    job = run_job(reminders_tick(), vpp_client(sandbox_setting))
    assert len(mail.outbox) == 2

    # The worker died after sending and before recording: the items are handed out again.
    JobItem.objects.filter(job=job).update(status=ItemStatus.PENDING, step="remind", claim_token="")
    Job.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING, finished_at=None)
    run_job(Job.objects.get(pk=job.pk), vpp_client(sandbox_setting))

    assert len(mail.outbox) == 2
    assert InvitationDelivery.objects.filter(job=job).count() == 2


def test_an_associated_user_gets_no_reminder(traveller, vpp_sandbox, sandbox_setting, user_factory):
    accepted, waiting = user_factory(email="yes@example.com"), user_factory(email="no@example.com")
    invite([accepted, waiting], sandbox_setting)
    reminders_on(days=1)
    traveller.shift(dt.timedelta(days=1, minutes=1))
    job = reminders_tick()
    assert JobItem.objects.filter(job=job).count() == 2

    # Apple's USER_ASSOCIATED notification arrives after the round was planned, before it runs.
    record = vpp_sandbox.accept_invitation(VppUser.objects.get(user=accepted).invite_code)
    body = {
        "notificationId": "n-accept-1",
        "notificationType": "USER_ASSOCIATED",
        "notification": {"associatedUsers": [{"clientUserId": str(accepted.vpp_user.client_user_id), "idHash": "h1"}]},
    }
    notifications.notification_receive(body=json.dumps(body).encode())
    assert record

    job = run_job(job, vpp_client(sandbox_setting))
    results = {item.user_id: item for item in JobItem.objects.filter(job=job)}
    assert results[accepted.pk].reason == "Associated meanwhile; no reminder sent."
    assert [m.to for m in mail.outbox] == [["no@example.com"]]
    traveller.shift(dt.timedelta(days=2))
    planned = reminders_tick()
    assert set(JobItem.objects.filter(job=planned).values_list("user_id", flat=True)) == {waiting.pk}


def test_escalation_sends_the_first_reminder_by_push_then_email(
    traveller, sandbox_setting, user_factory, apns_settings, fake_apns
):
    user = user_factory(email="esc@example.com", push_token="ab" * 32)
    invite([user], sandbox_setting)
    reminders_on(days=1, most=2, escalate=True)

    traveller.shift(dt.timedelta(days=1, minutes=1))
    first = run_job(reminders_tick(), vpp_client(sandbox_setting))
    assert JobItem.objects.get(job=first).reason.startswith("Reminder 1 of 2 sent (push")
    assert len(fake_apns.state.pushes) == 1 and mail.outbox == []

    traveller.shift(dt.timedelta(days=1, minutes=1))
    second = run_job(reminders_tick(), vpp_client(sandbox_setting))
    assert JobItem.objects.get(job=second).reason == "Reminder 2 of 2 sent (email)."
    assert [m.to for m in mail.outbox] == [["esc@example.com"]]
    assert len(fake_apns.state.pushes) == 1


def test_an_admin_invitation_starts_the_count_again(traveller, sandbox_setting, user_factory):
    user = user_factory(email="count@example.com")
    invite([user], sandbox_setting)
    reminders_on(days=1, most=1)
    traveller.shift(dt.timedelta(days=1, minutes=1))
    run_job(reminders_tick(), vpp_client(sandbox_setting))
    assert VppUser.objects.get(user=user).reminders_sent == 1
    invite([user], sandbox_setting)  # the admin sends the invitation again
    assert VppUser.objects.get(user=user).reminders_sent == 0
    assert timezone.now() - VppUser.objects.get(user=user).invited_at < dt.timedelta(minutes=5)


def test_the_setting_page_saves_reminders_and_refuses_bad_values(client, django_user_model, db):
    from django.contrib.auth.models import Permission
    from django.urls import reverse

    admin = django_user_model.objects.create_user("setter", password=None)
    admin.user_permissions.add(Permission.objects.get(codename="change_vppserversetting"))
    client.force_login(admin)
    url = reverse("vpp:server-setting")
    form = {"section": "lifecycle", "reminders_enabled": "on", "reminder_after_days": "0", "reminder_max": "2"}

    response = client.post(url, form)
    assert response.status_code == 422
    assert "Ensure this value is greater than or equal to 1." in response.content.decode()
    assert not VppServerSetting.load().reminders_enabled  # nothing changed

    response = client.post(url, {**form, "reminder_after_days": "4", "convert_during_sync": "on"})
    assert response.status_code == 302
    setting = VppServerSetting.load()
    assert (setting.reminders_enabled, setting.reminder_after_days, setting.convert_during_sync) == (True, 4, True)
    audit = AuditEvent.objects.get(action="vpp.lifecycle_changed")
    assert "remind after (days) 7 → 4" in audit.target_summary
