"""Apple errors that concern some users of a batch, in the job engine, against the sandbox over HTTP.

Issue 11 (1, 2, 7) and 10.5: an error that names users fails those users only, with Apple's number
and a plain reason; failed creates end as "not a VPP user"; an event stuck PENDING is settled by
asking Apple; a re-sent retire reads Apple's 9609 for users it already retired as "already retired".
"""

from __future__ import annotations

import pytest

from tests.support.job_loop import run_job
from tests.support.sandbox import store_sandbox_token
from users.models import User
from users.selectors import UserSelection
from vpp.apple.errors import InvalidRequestError
from vpp.apple.types import RequestUser
from vpp.content_token import vpp_client
from vpp.jobs import apple_io
from vpp.jobs.engine import job_create, job_retry_failed
from vpp.jobs.plan import vpp_plan_build
from vpp.models import ItemStatus, JobAction, JobItem, JobStatus, VppUser, VppUserStatus

pytestmark = [pytest.mark.django_db, pytest.mark.sandbox]

REFUSED = "refused@example.com"


@pytest.fixture
def setting(vpp_sandbox, settings):
    settings.VPP_EVENT_POLL_INTERVAL = 1
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    return store_sandbox_token(vpp_sandbox)


def start(action, users):
    plan = vpp_plan_build(action=action, users=User.objects.filter(pk__in=[u.pk for u in users]), channel="email")
    return job_create(plan=plan, actor=None, selection=UserSelection(ids=tuple(u.pk for u in users)))


def items(job) -> dict[int, JobItem]:
    return {item.user_id: item for item in JobItem.objects.filter(job=job)}


def invited(vpp_sandbox, setting, users):
    job = run_job(start(JobAction.INVITE, users), vpp_client(setting))
    assert (job.succeeded, job.failed) == (len(users), 0), list(JobItem.objects.filter(job=job).values("reason"))
    return job


# --------------------------------------------------------------------------- 11.1


def test_an_invite_refused_for_one_user_invites_the_other_four(vpp_sandbox, setting, user_factory):
    users = [user_factory() for _ in range(4)] + [user_factory(email=REFUSED)]
    vpp_sandbox.control(refuse_emails=[REFUSED])  # Apple: 9717, errorInfo.clientUserIds = that user

    job = run_job(start(JobAction.INVITE, users), vpp_client(setting))

    assert (job.status, job.succeeded, job.failed) == (JobStatus.DONE, 4, 1)
    bad = items(job)[users[-1].pk]
    assert bad.error_number == 9717
    assert bad.reason.startswith("Not added to VPP (not a VPP user): Apple rejected the user's e-mail address")
    assert "Retry failed only" in bad.reason
    assert not VppUser.objects.filter(user=users[-1]).exists()
    assert set(VppUser.objects.values_list("status", flat=True)) == {VppUserStatus.INVITED}
    # The rest of the batch went again at once, without the refused user, in the same job.
    assert len(vpp_sandbox.users()) == 4
    assert vpp_sandbox.counters()["endpoints"]["POST /mdm/v2/users/create"] == 2

    # "Retry failed only" sends the refused user alone (and Apple still refuses that address).
    retry = run_job(job_retry_failed(job=job, actor=None), vpp_client(setting))
    assert (retry.total, retry.succeeded, retry.failed) == (1, 0, 1)
    assert items(retry)[users[-1].pk].error_number == 9717
    assert len(vpp_sandbox.users()) == 4


def test_the_client_keeps_errorinfo_on_the_error(vpp_sandbox, setting, user_factory):
    client = vpp_client(setting)
    with pytest.raises(InvalidRequestError) as caught:
        client.create_users([RequestUser("a", email="a@example.com"), RequestUser("b", email="someone@localhost")])
    assert (caught.value.error_number, caught.value.client_user_ids) == (9717, ["b"])
    assert caught.value.error_info == {"clientUserIds": ["b"]}


def test_an_address_apple_refuses_is_a_skip_reason_before_sending(setting, user_factory):
    users = [
        user_factory(email="someone@localhost"),
        user_factory(email="first+tag@example.com"),
        user_factory(email="jürgen@bücher.example"),
    ]
    plan = vpp_plan_build(
        action=JobAction.INVITE, users=User.objects.filter(pk__in=[u.pk for u in users]), channel="email"
    )
    assert [row.skip_reason for row in plan.rows] == ["apple_email", "", ""]
    assert plan.skip_counts() == [("apple_email", "Email address Apple refuses (no dot in its domain, e.g. "
                                   "someone@localhost)", 1)]  # fmt: skip


def test_a_selection_sync_pushes_every_email_but_the_refused_one(vpp_sandbox, setting, user_factory):
    users = [user_factory() for _ in range(3)]
    invited(vpp_sandbox, setting, users)
    for n, user in enumerate(users):
        user.email = REFUSED if n == 0 else f"new{n}@example.com"
        user.save(update_fields=["email"])
    vpp_sandbox.control(refuse_emails=[REFUSED])

    job = run_job(start(JobAction.SYNC, users), vpp_client(setting))

    by_user = items(job)
    assert (job.succeeded, job.failed) == (2, 1)
    assert by_user[users[0].pk].error_number == 9717
    assert by_user[users[0].pk].reason.startswith("Email update refused: Apple rejected the user's e-mail")
    apple = {u["clientUserId"]: u["email"] for u in vpp_sandbox.users()}
    for n, user in enumerate(users[1:], start=1):
        assert apple[str(user.vpp_user.client_user_id)] == f"new{n}@example.com"
        assert by_user[user.pk].reason.startswith("New email sent to Apple.")


def test_a_delete_refused_for_one_named_user_deletes_the_others(vpp_sandbox, setting, user_factory):
    users = [user_factory() for _ in range(3)]
    invited(vpp_sandbox, setting, users)
    named = str(VppUser.objects.get(user=users[1]).client_user_id)
    vpp_sandbox.control(inject_errors=[{"number": 9610, "path": "/assets/revoke", "clientUserIds": [named]}])

    job = run_job(start(JobAction.DELETE, users), vpp_client(setting))

    by_user = items(job)
    assert (job.succeeded, job.failed) == (2, 1)
    assert by_user[users[1].pk].error_number == 9610
    assert "Apple could not find the licence" in by_user[users[1].pk].reason
    assert VppUser.objects.get(user=users[1]).status == VppUserStatus.INVITED
    apple = {u["clientUserId"]: u["status"] for u in vpp_sandbox.users()}
    assert sorted(apple.values()) == ["Registered", "Retired", "Retired"]


def test_an_error_naming_nobody_still_fails_the_whole_batch(vpp_sandbox, setting, user_factory):
    users = [user_factory() for _ in range(2)]
    vpp_sandbox.control(inject_errors=[{"number": 9602, "path": "/users/create", "body": "empty_info"}])

    job = run_job(start(JobAction.INVITE, users), vpp_client(setting))

    assert (job.succeeded, job.failed) == (0, 2)
    assert {item.error_number for item in items(job).values()} == {9602}


# --------------------------------------------------------------------------- 11.2


def test_creates_apple_reports_failed_end_as_not_vpp_users_with_apples_reason(vpp_sandbox, setting, user_factory):
    users = [user_factory() for _ in range(3)]
    vpp_sandbox.control(async_failure_share=1.0)  # every create of the event fails with 9603

    job = run_job(start(JobAction.INVITE, users), vpp_client(setting))

    assert (job.status, job.succeeded, job.failed) == (JobStatus.DONE, 0, 3)
    for item in items(job).values():
        assert item.error_number == 9603
        assert item.reason.startswith("Not added to VPP (not a VPP user): Apple's service had an internal error.")
        assert "retried later" not in item.reason and "Retry failed only" in item.reason
    assert not VppUser.objects.exists()  # not "pending" for ever

    vpp_sandbox.control(async_failure_share=0.0)
    job = run_job(start(JobAction.INVITE, users), vpp_client(setting))  # the plan no longer skips them
    assert (job.succeeded, job.failed) == (3, 0)


# --------------------------------------------------------------------------- 11.7


def test_a_create_event_pending_past_apples_ten_minutes_is_settled_by_asking_apple(
    vpp_sandbox, setting, settings, user_factory, monkeypatch
):
    settings.VPP_CREATE_RECHECK_SECONDS = 0  # "after 10 minutes", now
    monkeypatch.setattr(apple_io, "wait_budget", lambda: 0.0)
    users = [user_factory() for _ in range(2)]
    vpp_sandbox.control(stall_events=1)  # the create is done, its event stays PENDING for ever

    job = run_job(start(JobAction.INVITE, users), vpp_client(setting), max_rounds=30)

    assert (job.status, job.succeeded) == (JobStatus.DONE, 2), list(JobItem.objects.values("status", "reason"))
    assert vpp_sandbox.counters()["users_created"] == 2  # Apple had them: not sent again


def test_a_create_event_pending_that_did_nothing_is_sent_again_once(
    vpp_sandbox, setting, settings, user_factory, monkeypatch
):
    settings.VPP_CREATE_RECHECK_SECONDS = 0
    monkeypatch.setattr(apple_io, "wait_budget", lambda: 0.0)
    users = [user_factory() for _ in range(2)]
    vpp_sandbox.control(stall_events=1, stall_applies=False)

    job = run_job(start(JobAction.INVITE, users), vpp_client(setting), max_rounds=30)

    assert (job.status, job.succeeded) == (JobStatus.DONE, 2)
    assert vpp_sandbox.counters()["endpoints"]["POST /mdm/v2/users/create"] == 2
    assert vpp_sandbox.counters()["users_created"] == 2


# --------------------------------------------------------------------------- 10.5


def test_a_delete_resent_after_its_answer_was_lost_reports_already_retired(vpp_sandbox, setting, user_factory):
    users = [user_factory() for _ in range(2)]
    invited(vpp_sandbox, setting, users)
    client = vpp_client(setting)
    # The first run retired users[0] at Apple, and its answer was lost (the worker was killed).
    for event_id in client.retire_users([str(VppUser.objects.get(user=users[0]).client_user_id)]):
        client.wait_for_event(event_id, poll_interval=0.05)

    job = run_job(start(JobAction.DELETE, users), client)

    by_user = items(job)
    assert (job.succeeded, job.failed) == (2, 0)
    assert by_user[users[0].pk].reason.startswith("Already retired at Apple")
    assert by_user[users[1].pk].reason == "Licences revoked and user retired."
    assert all(item.status == ItemStatus.SUCCEEDED for item in by_user.values())


def test_a_delete_of_a_user_apple_never_had_says_so(vpp_sandbox, setting, user_factory):
    user = user_factory(vpp_status=VppUserStatus.INVITED)  # here only, never created at Apple

    job = run_job(start(JobAction.DELETE, [user]), vpp_client(setting))

    assert items(job)[user.pk].reason == "Apple had no record of this user; marked retired here."


def test_a_retire_whose_event_apple_forgot_is_checked_at_apple_not_reported_done(vpp_sandbox, setting, user_factory):
    users = [user_factory() for _ in range(2)]
    invited(vpp_sandbox, setting, users)
    # Apple answers the retire's first status poll with 9708 (event unknown) and never retired them.
    vpp_sandbox.control(stall_events=2, stall_applies=False)  # revoke and retire: queued, never done
    vpp_sandbox.control(inject_errors=[{"number": 9708, "path": "/status", "after": 0}] * 2)

    job = run_job(start(JobAction.DELETE, users), vpp_client(setting))

    assert (job.succeeded, job.failed) == (0, 2)
    for item in items(job).values():
        assert item.error_number == 9708 and "still lists this user as active" in item.reason
    assert set(VppUser.objects.values_list("status", flat=True)) == {VppUserStatus.INVITED}


def test_the_confirmation_names_the_users_whose_address_apple_refuses(setting, client, user_factory):
    from django.contrib.auth.models import Permission
    from django.contrib.auth.models import User as Admin

    admin = Admin.objects.create_user("batch-admin", password="pw-0123456789")
    admin.user_permissions.add(Permission.objects.get(content_type__app_label="vpp", codename="invite_vppuser"))
    client.force_login(admin)
    fine, dotless = user_factory("Fine Fay"), user_factory("Dotless Dan", email="dan@localhost")

    response = client.post(
        "/vpp/bulk/invite/confirm/",
        f"pk={fine.pk}&pk={dotless.pk}&channel=email",
        content_type="application/x-www-form-urlencoded",
        HTTP_HX_REQUEST="true",
    )

    html = response.content.decode()
    assert "Email address Apple refuses" in html and "Dotless Dan" in html
    assert "1 user</strong>" in html


def test_a_create_apple_completed_but_does_not_list_ends_as_not_a_vpp_user(token_setting, user_factory):
    from tests.support.fake_apple import FakeApple

    class ForgetfulApple(FakeApple):
        """Apple reports the create COMPLETE, but lists no record for the users afterwards."""

        def create_users(self, users):
            events = super().create_users(users)
            for request in users:
                self.users.pop(request.client_user_id, None)
            return events

    user = user_factory()
    job = run_job(start(JobAction.INVITE, [user]), ForgetfulApple())

    item = items(job)[user.pk]
    assert item.status == ItemStatus.FAILED
    assert item.reason.startswith("Not added to VPP (not a VPP user): Apple lists no record")
    assert not VppUser.objects.filter(user=user).exists()  # not "pending" for ever
