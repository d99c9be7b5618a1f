"""The event sources webhooks listen to: a real invite and delete against the sandbox, an Apple
notification of an accepted invitation (vpp.signals.vpp_event, sent after commit)."""

from __future__ import annotations

import pytest

from tests.support.job_loop import run_job
from tests.support.sandbox import store_sandbox_token
from tests.support.users import make_user
from users.models import User
from users.selectors import UserSelection
from vpp.content_token import vpp_client
from vpp.jobs.engine import job_create
from vpp.jobs.plan import vpp_plan_build
from vpp.models import JobAction, VppUserStatus
from vpp.services.notifications import users_mark_associated
from vpp.signals import vpp_event

pytestmark = pytest.mark.django_db


@pytest.fixture
def events():
    seen: list[tuple[str, dict]] = []

    def record(sender, event_type, data, **kwargs):
        seen.append((event_type, data))

    vpp_event.connect(record, dispatch_uid="test-events")
    yield seen
    vpp_event.disconnect(dispatch_uid="test-events")


def _start(action, users):
    plan = vpp_plan_build(action=action, users=User.objects.filter(pk__in=[u.pk for u in users]), channel="email")
    return job_create(plan=plan, actor=None, selection=UserSelection(ids=tuple(u.pk for u in users)))


@pytest.mark.sandbox
def test_invite_and_delete_send_their_events(vpp_sandbox, settings, events, django_capture_on_commit_callbacks):
    settings.VPP_EVENT_POLL_INTERVAL = 1
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    setting = store_sandbox_token(vpp_sandbox)
    users = [make_user() for _ in range(2)]
    with django_capture_on_commit_callbacks(execute=True):
        invite = run_job(_start(JobAction.INVITE, users), vpp_client(setting))
    sent = [data for kind, data in events if kind == "invitation.sent"]
    assert sorted(d["user_id"] for d in sent) == sorted(u.pk for u in users)
    assert {d["channel"] for d in sent} == {"email"} and all(d["client_user_id"] for d in sent)
    assert (
        "job.finished",
        {"job_id": invite.pk, "action": "invite", "status": "done", "succeeded": 2, "failed": 0, "skipped": 0},
    ) in events
    with django_capture_on_commit_callbacks(execute=True):
        run_job(_start(JobAction.DELETE, users[:1]), vpp_client(setting))
    retired = [data for kind, data in events if kind == "user.retired"]
    assert [d["user_id"] for d in retired] == [users[0].pk]


def test_an_accepted_invitation_is_a_user_associated_event(events, django_capture_on_commit_callbacks):
    user = make_user(vpp_status=VppUserStatus.INVITED)
    cuid = str(user.vpp_user.client_user_id)
    with django_capture_on_commit_callbacks(execute=True):
        users_mark_associated(users=[{"clientUserId": cuid, "idHash": "h1"}])
        users_mark_associated(users=[{"clientUserId": cuid, "idHash": "h1"}])  # told twice: one event
    assert events == [("user.associated", {"client_user_id": cuid, "user_id": user.pk})]
