"""End to end without any sync: Apple (the sandbox) learns our notification URL, a user accepts the
invitation on the sandbox's page, and the USER_ASSOCIATED notification makes them associated."""

from __future__ import annotations

import pytest
import requests

from tests.support.users import make_user
from vpp.apple.client import VppClient
from vpp.apple.types import RequestUser
from vpp.models import AppleNotification, Job, VppServerSetting, VppUserStatus
from vpp.services import setting as setting_service

pytestmark = [pytest.mark.sandbox, pytest.mark.django_db(transaction=True)]


def test_it_turns_an_accepted_invitation_into_associated_through_a_notification(live_server, vpp_sandbox):
    setting = VppServerSetting.load()
    setting.api_base_url = vpp_sandbox.base_url
    setting.save()
    setting_service.token_upload(data=vpp_sandbox.token, actor=None)
    setting_service.notifications_configure(public_url=live_server.url, actor=None)
    assert AppleNotification.objects.filter(notification_type="TEST_NOTIFICATION").count() == 1
    setting.refresh_from_db()
    assert setting.notification_url == f"{live_server.url}/vpp/notifications/"

    apple = VppClient(vpp_sandbox.token, base_url=vpp_sandbox.base_url)
    vpp_user = make_user(
        "Ada", login_id="ada", email="ada@example.com", devices=(), vpp_status=VppUserStatus.INVITED, at_apple=apple
    ).vpp_user
    [record] = [r for r in vpp_sandbox.users() if r["clientUserId"] == str(vpp_user.client_user_id)]

    # The device user opens Apple's invitation page and presses Accept (a plain form POST).
    page = requests.post(
        f"{vpp_sandbox.root_url}/invite/{record['inviteCode']}",
        data={"inviteCode": record["inviteCode"], "appleAccount": "ada@icloud.example"},
        timeout=10,
    )
    assert page.status_code == 200

    def associated():
        vpp_user.refresh_from_db()
        return vpp_user.status == VppUserStatus.ASSOCIATED

    assert vpp_sandbox.wait_for(associated, timeout=10)
    assert vpp_user.id_hash
    assert AppleNotification.objects.filter(notification_type="USER_ASSOCIATED").count() == 1
    assert not Job.objects.exists()  # no sync was involved


def test_it_keeps_the_old_secret_when_apple_cannot_reach_the_address(vpp_sandbox):
    setting = VppServerSetting.load()
    setting.api_base_url = vpp_sandbox.base_url
    setting.save()
    setting_service.token_upload(data=vpp_sandbox.token, actor=None)
    with pytest.raises(setting_service.NotificationSetupError):
        setting_service.notifications_configure(public_url="http://127.0.0.1:9", actor=None)
    setting.refresh_from_db()
    assert setting.notification_auth_token_encrypted == "" and setting.notification_url == ""


def test_a_notification_from_the_sandbox_ends_the_wait_for_a_pending_event(live_server, vpp_sandbox_factory, settings):
    from vpp.jobs import apple_io
    from vpp.models import JobAction, JobStatus

    settings.VPP_EVENT_POLL_INTERVAL = 30  # Apple's pace for polling a pending event
    sandbox = vpp_sandbox_factory(pending_seconds=1.0, notification_retry_seconds=0.05)
    setting = VppServerSetting.load()
    setting.api_base_url = sandbox.base_url
    setting.save()
    setting_service.token_upload(data=sandbox.token, actor=None)
    setting_service.notifications_configure(public_url=live_server.url, actor=None)
    apple = VppClient(sandbox.token, base_url=sandbox.base_url)
    job = Job.objects.create(action=JobAction.INVITE, status=JobStatus.RUNNING, total=1)

    [event] = apple.create_users([RequestUser(client_user_id="1b0d5c36-8c7e-4f51-9d43-7d1f8f3e6a01")])
    finished, _ = apple_io.events_wait(job=job, token="t", client=apple, event_ids=[event])

    assert finished[event].status == "COMPLETE"
    assert AppleNotification.objects.filter(notification_type="USER_MANAGEMENT", event_id=event).exists()
    polls = [r for r in sandbox.counters()["requests"] if r["path"].endswith("/status")]
    assert len(polls) == 2  # pending, then complete right after the notification
    assert polls[1]["t"] - polls[0]["t"] < 10  # not Apple's 30 s polling pace
