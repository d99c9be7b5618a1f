"""The push invitation channel end to end: database devices → provider → fake APNs over HTTP/2."""

from __future__ import annotations

import pytest

from tests.support.users import make_user
from users.models import ActivationState, Device, Platform, User
from users.selectors import UserSelection
from vpp.apple.apns import ApnsProvider, MemoryTokenStore
from vpp.invitations.push import (
    DeliveryStatus,
    PushMessage,
    device_push_token_clear,
    push_invitation,
    push_invitations,
)

pytestmark = pytest.mark.django_db

LINK = "http://127.0.0.1:9/invite/abc123"


def token(n: int) -> str:
    return f"{n:02x}" * 32


ACTIVE = ActivationState.ACTIVATED


def send(user, **kwargs):
    return push_invitation(user=user, link=LINK, title="Apps from Acme", body="Tap to accept.", **kwargs)


def test_it_pushes_to_every_activated_apple_device_with_a_token(apns_settings, fake_apns):
    user = make_user(
        "Ann",
        devices=[
            (Platform.IOS, ACTIVE, token(1)),
            (Platform.MACOS, ACTIVE, token(2)),
            (Platform.IPADOS, ActivationState.DEACTIVATED, token(3)),
            (Platform.ANDROID, ACTIVE, token(4)),
            (Platform.IPADOS, ACTIVE, ""),
        ],
    )
    result = send(user)
    assert (result.status, result.ok, result.delivered_count) == (DeliveryStatus.DELIVERED, True, 2)
    pushes = fake_apns.state.pushes
    assert sorted(p.device_token for p in pushes) == [token(1), token(2)]
    assert {p.link for p in pushes} == {LINK}
    assert pushes[0].payload["aps"]["alert"] == {"title": "Apps from Acme", "body": "Tap to accept."}


def test_it_reports_no_device_without_calling_apns(apns_settings, fake_apns):
    user = make_user("Bob", devices=[(Platform.IOS, ACTIVE, ""), (Platform.ANDROID, ACTIVE, token(5))])
    result = send(user)
    assert (result.status, result.ok) == (DeliveryStatus.NO_DEVICE, False)
    assert "push token" in result.error
    assert fake_apns.state.requests == 0


def test_it_clears_the_token_of_an_unregistered_device_and_still_delivers_to_the_other(apns_settings, fake_apns):
    user = make_user("Cid", devices=[(Platform.IOS, ACTIVE, token(6)), (Platform.MACOS, ACTIVE, token(7))])
    fake_apns.state.unregister(token(6))
    result = send(user)
    assert result.ok and result.delivered_count == 1
    assert sorted(Device.objects.filter(user=user).values_list("push_token", flat=True)) == ["", token(7)]


def test_it_fails_when_the_only_device_is_unregistered(apns_settings, fake_apns):
    user = make_user("Dee", devices=[(Platform.IOS, ACTIVE, token(8))])
    fake_apns.state.unregister(token(8))
    result = send(user)
    assert result.status is DeliveryStatus.FAILED and not result.transient
    assert "no longer registered" in result.error
    assert Device.objects.get(user=user).push_token == ""
    assert send(user).status is DeliveryStatus.NO_DEVICE  # not tried again


def test_it_keeps_a_token_the_app_replaced_in_the_meantime(db):
    user = make_user("Eve", devices=[(Platform.IOS, ACTIVE, token(10))])
    device = Device.objects.get(user=user)
    assert device_push_token_clear(device=device, token=token(9)) is False
    assert Device.objects.get(pk=device.pk).push_token == token(10)


def test_it_keeps_a_bad_device_token_and_says_why(apns_settings, fake_apns):
    user = make_user("Fay", devices=[(Platform.IOS, ACTIVE, "not-a-hex-token")])
    result = send(user)
    assert result.status is DeliveryStatus.FAILED
    assert "device token is not valid" in result.error
    assert Device.objects.get(user=user).push_token == "not-a-hex-token"


def messages(*users):
    return [PushMessage(user, LINK, "t", "b") for user in users]


def test_it_stops_the_batch_when_apns_refuses_our_credentials(apns_settings, fake_apns):
    users = [make_user(f"U{i}", devices=[(Platform.IOS, ACTIVE, token(20 + i))]) for i in range(3)]
    apns_settings.APNS_TEAM_ID = "WRONGTEAM1"
    results = push_invitations(messages(*users))
    assert [r.status for r in results] == [DeliveryStatus.FAILED] * 3
    assert all("InvalidProviderToken" not in r.error and "key id and team id" in r.error for r in results)
    assert not any(r.transient for r in results)
    assert fake_apns.state.requests == 1  # no point asking again


def test_it_marks_failures_transient_when_apns_is_down_and_stops_the_batch(apns_settings, fake_apns):
    users = [make_user(f"V{i}", devices=[(Platform.IOS, ACTIVE, token(30 + i))]) for i in range(3)]
    fake_apns.state.set_fault(status=503, reason="ServiceUnavailable", count=5)
    results = push_invitations(messages(*users))
    assert [(r.status, r.transient) for r in results] == [(DeliveryStatus.FAILED, True)] * 3
    assert "APNs is unavailable" in results[0].error
    assert fake_apns.state.requests == 1


def test_it_carries_on_after_one_device_is_rate_limited(apns_settings, fake_apns):
    users = [make_user(f"W{i}", devices=[(Platform.IOS, ACTIVE, token(40 + i))]) for i in range(2)]
    fake_apns.state.set_fault(status=429, reason="TooManyRequests", count=1)
    results = push_invitations(messages(*users))
    assert [(r.status, r.transient) for r in results] == [
        (DeliveryStatus.FAILED, True),
        (DeliveryStatus.DELIVERED, False),
    ]


def test_it_says_when_push_is_not_configured(apns_settings, fake_apns):
    apns_settings.APNS_KEY = ""
    result = send(make_user("Gus", devices=[(Platform.IOS, ACTIVE, token(50))]))
    assert result.status is DeliveryStatus.FAILED
    assert "not configured" in result.error
    assert fake_apns.state.requests == 0


def test_it_uses_a_given_provider_and_leaves_it_open(fake_apns, db):
    user = make_user("Hal", devices=[(Platform.MACOS, ACTIVE, token(60))])
    with ApnsProvider(fake_apns.config(), token_store=MemoryTokenStore()) as apns:
        assert send(user, provider=apns).ok
        assert send(user, provider=apns).ok
    assert fake_apns.state.stats()["provider_tokens"] == 1


def test_it_plugs_into_the_invitation_channel_seam(apns_settings, fake_apns):
    from vpp.invitations.channels import Invitation, get_channel
    from vpp.models import VppServerSetting

    user = make_user("Ivy", devices=[(Platform.IOS, ACTIVE, token(70))])
    nobody = make_user("Jon", devices=())
    channel = get_channel("push")
    assert (channel.can_reach(user), channel.can_reach(nobody)) == (True, False)
    setting = VppServerSetting.load()
    results = channel.send([Invitation(1, user, LINK, "Acme"), Invitation(2, nobody, LINK, "Acme")], setting=setting)
    assert [r.ok for r in results] == [True, False]
    [recorded] = fake_apns.state.pushes
    assert recorded.link == LINK
    assert recorded.payload["aps"]["alert"]["title"] == "Join Acme's app programme"


def test_it_delivers_a_push_invite_job_end_to_end(apns_settings, fake_apns, apple, token_setting, user_factory):
    # The job engine (vpp/services) with an in-memory Apple, pushes over HTTP/2 to the fake.
    from tests.support.job_loop import run_job
    from vpp.jobs.engine import job_create
    from vpp.jobs.plan import vpp_plan_build
    from vpp.models import InvitationDelivery, JobAction, VppUser, VppUserStatus

    apns_settings.VPP_EVENT_POLL_INTERVAL = 0
    reachable, gone = user_factory(push_token=token(80)), user_factory(push_token=token(81))
    fake_apns.state.unregister(token(81))
    users = User.objects.filter(pk__in=[reachable.pk, gone.pk])
    plan = vpp_plan_build(action=JobAction.INVITE, users=users, channel="push")
    job = run_job(job_create(plan=plan, actor=None, selection=UserSelection(), ip="127.0.0.1"), apple)
    assert (job.succeeded, job.failed) == (1, 1)
    code = VppUser.objects.get(user=reachable).invite_code
    [recorded] = [p for p in fake_apns.state.pushes if p.status == 200]
    assert recorded.device_token == token(80) and code in recorded.link
    assert VppUser.objects.get(user=reachable).last_invitation_channel == "push"
    failed = InvitationDelivery.objects.get(vpp_user__user=gone)
    assert failed.state == InvitationDelivery.State.FAILED and "no longer registered" in failed.error
    assert Device.objects.get(user=gone).push_token == ""
    assert VppUser.objects.get(user=gone).status == VppUserStatus.INVITED  # Apple has the code; only the push failed


def test_a_push_invite_waits_out_an_apns_outage(apns_settings, fake_apns, apple, token_setting, user_factory):
    # APNs 503 is transient: the item stays at "deliver" and the chunk runs again (an attempt).
    from tests.support.job_loop import run_job
    from vpp.jobs.engine import job_create
    from vpp.jobs.plan import vpp_plan_build
    from vpp.models import JobAction, JobItem

    apns_settings.VPP_EVENT_POLL_INTERVAL = 0
    user = user_factory(push_token=token(90))
    fake_apns.state.set_fault(status=503, reason="ServiceUnavailable", count=1)
    plan = vpp_plan_build(action=JobAction.INVITE, users=User.objects.filter(pk=user.pk), channel="push")
    job = run_job(job_create(plan=plan, actor=None, selection=UserSelection(ids=(user.pk,)), ip="127.0.0.1"), apple)
    assert (job.succeeded, job.failed) == (1, 0)
    assert [p.device_token for p in fake_apns.state.pushes if p.status == 200] == [token(90)]
    assert JobItem.objects.get(job=job).attempts == 2
