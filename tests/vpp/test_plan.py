"""Eligibility: every skip reason, per action and channel."""

from __future__ import annotations

import pytest

from tests.support.users import make_user
from users.models import ActivationState, Platform, User
from vpp.invitations import channels as invitations
from vpp.jobs.plan import STEP_CREATE, STEP_DELIVER, vpp_plan_build
from vpp.models import InvitationChannel, Job, JobAction, JobItem, JobStatus, VppUserStatus

pytestmark = pytest.mark.django_db


def reasons(action, channel="email"):
    plan = vpp_plan_build(action=action, users=User.objects.all(), channel=channel)
    return {row.label.split(" (")[0]: row.skip_reason or row.step for row in plan.rows}


def test_it_explains_every_invite_skip():
    make_user(name="ok")
    make_user(name="inactive", active=False)
    make_user(name="no device", devices=())
    make_user(name="android only", platform=Platform.ANDROID)
    make_user(name="not activated", state=ActivationState.PENDING)
    make_user(name="associated", vpp_status=VppUserStatus.ASSOCIATED)
    make_user(name="reinvite", vpp_status=VppUserStatus.INVITED, vpp_fields={"invite_code": "abc"})
    make_user(name="retired", vpp_status=VppUserStatus.RETIRED)
    make_user(name="no email", email="")
    busy = make_user(name="busy")
    pending = make_user(name="pending", vpp_status=VppUserStatus.PENDING)
    job = Job.objects.create(action=JobAction.SYNC, status=JobStatus.RUNNING)
    JobItem.objects.create(job=job, user=busy)
    JobItem.objects.create(job=job, user=pending)
    assert reasons(JobAction.INVITE) == {
        "ok": STEP_CREATE,
        "inactive": "inactive",
        "no device": "no_device",
        "android only": "no_device",
        "not activated": "no_device",
        "associated": "associated",
        "reinvite": STEP_DELIVER,
        "retired": STEP_CREATE,
        "no email": "no_email",
        "busy": "busy",
        "pending": "pending",
    }


@pytest.fixture
def apns_configured(settings):
    settings.APNS_KEY, settings.APNS_KEY_ID, settings.APNS_TEAM_ID = "pem", "ABCDE12345", "TEAM123456"
    settings.APNS_TOPIC = "com.example.agent"


def test_it_checks_the_push_token_for_the_push_and_both_channels(apns_configured):
    make_user(name="email only")
    make_user(name="push only", email="", push_token="ab" * 32)
    make_user(name="neither", email="")
    assert reasons(JobAction.INVITE, InvitationChannel.PUSH) == {
        "email only": "no_push",
        "push only": STEP_CREATE,
        "neither": "no_push",
    }
    assert reasons(JobAction.INVITE, InvitationChannel.BOTH) == {
        "email only": STEP_CREATE,
        "push only": STEP_CREATE,
        "neither": "no_contact",
    }


def test_it_skips_push_only_invitations_while_apns_is_not_configured(settings):
    settings.APNS_KEY = ""
    make_user(name="push only", email="", push_token="ab" * 32)
    make_user(name="email too", push_token="cd" * 32)
    assert reasons(JobAction.INVITE, InvitationChannel.PUSH) == {"push only": "no_channel", "email too": "no_channel"}
    # "both" falls back to email alone
    assert reasons(JobAction.INVITE, InvitationChannel.BOTH) == {"push only": "no_contact", "email too": STEP_CREATE}


def test_it_skips_everyone_when_the_channel_is_not_registered(monkeypatch):
    make_user(name="ok")
    monkeypatch.setattr(invitations, "_registry", {})
    assert reasons(JobAction.INVITE) == {"ok": "no_channel"}


def test_it_explains_delete_and_sync_skips():
    make_user(name="never")
    make_user(name="retired", vpp_status=VppUserStatus.RETIRED)
    make_user(name="invited", active=False, vpp_status=VppUserStatus.INVITED)
    make_user(name="stale pending", vpp_status=VppUserStatus.PENDING)
    assert reasons(JobAction.DELETE) == {
        "never": "not_vpp",
        "retired": "retired",
        "invited": "delete",
        "stale pending": "delete",
    }
    assert reasons(JobAction.SYNC) == {
        "never": "not_vpp",
        "retired": "update",
        "invited": "update",
        "stale pending": "update",
    }
