"""A mail server or APNs that is down for a while: the invitations go out later, not never."""

from __future__ import annotations

import smtplib
from datetime import timedelta

import pytest
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend as LocmemBackend
from django.utils import timezone

from tests.support.job_loop import run_job
from users.models import User
from users.selectors import UserSelection
from vpp.invitations.email import email_error_transient
from vpp.jobs.engine import job_create
from vpp.jobs.plan import vpp_plan_build
from vpp.models import InvitationDelivery, ItemStatus, JobAction, JobItem, JobStatus, VppUser, VppUserStatus

pytestmark = pytest.mark.django_db


class FlakyBackend(LocmemBackend):
    """The locmem outbox behind a mail server that refuses connections, or one recipient, for a while."""

    refuse_connections = 0  # how many more connection attempts fail
    refuse = {}  # address -> SMTP code it is refused with

    def open(self):
        if FlakyBackend.refuse_connections > 0:
            FlakyBackend.refuse_connections -= 1
            raise ConnectionRefusedError(111, "Connection refused")
        return super().open()

    def send_messages(self, messages):
        for message in messages:
            for address in message.to:
                if address in FlakyBackend.refuse:
                    code = FlakyBackend.refuse[address]
                    raise smtplib.SMTPRecipientsRefused({address: (code, b"mailbox unavailable")})
        return super().send_messages(messages)


@pytest.fixture(autouse=True)
def flaky_mail(settings):
    settings.VPP_EVENT_POLL_INTERVAL = 0
    settings.EMAIL_BACKEND = f"{__name__}.FlakyBackend"
    FlakyBackend.refuse_connections = 0
    FlakyBackend.refuse = {}
    return FlakyBackend


def invite(users):
    plan = vpp_plan_build(
        action=JobAction.INVITE, users=User.objects.filter(pk__in=[u.pk for u in users]), channel="email"
    )
    return job_create(plan=plan, actor=None, selection=UserSelection(ids=tuple(u.pk for u in users)), ip="127.0.0.1")


def test_an_unreachable_mail_server_delays_the_invitations_until_it_is_back(
    apple, token_setting, user_factory, flaky_mail
):
    users = [user_factory() for _ in range(3)]
    flaky_mail.refuse_connections = 2

    job = run_job(invite(users), apple)

    assert job.status == JobStatus.DONE and (job.succeeded, job.failed) == (3, 0)
    assert sorted(m.to[0] for m in mail.outbox) == sorted(u.email for u in users)  # each exactly once
    assert set(JobItem.objects.filter(job=job).values_list("attempts", flat=True)) == {3}
    assert apple.count("create_users") == 1  # the retries only re-sent the mail
    assert set(VppUser.objects.values_list("status", flat=True)) == {VppUserStatus.INVITED}


def test_a_refused_recipient_fails_at_once_and_a_busy_one_is_tried_again(
    apple, token_setting, user_factory, flaky_mail
):
    gone, busy, fine = (user_factory() for _ in range(3))
    flaky_mail.refuse = {gone.email: 550, busy.email: 451}

    job = invite([gone, busy, fine])
    from vpp.jobs import engine as jobs

    jobs.job_dispatch(job_id=job.pk, client=apple)
    with pytest.raises(jobs.JobDeferred):
        jobs.job_process_chunk(job_id=job.pk, phase="invite", chunk=0, client=apple)
    items = {item.user_id: item for item in JobItem.objects.filter(job=job)}
    assert items[gone.pk].status == ItemStatus.FAILED and "550" in items[gone.pk].reason
    assert items[fine.pk].status == ItemStatus.SUCCEEDED
    assert items[busy.pk].status == ItemStatus.PENDING and items[busy.pk].step == "deliver"

    flaky_mail.refuse = {gone.email: 550}  # the busy mailbox takes mail again
    job = run_job(job, apple)
    assert (job.succeeded, job.failed) == (2, 1)
    assert sorted(m.to[0] for m in mail.outbox) == sorted([busy.email, fine.email])
    assert InvitationDelivery.objects.get(vpp_user__user=busy).state == InvitationDelivery.State.SENT


def test_a_lasting_outage_fails_the_invitations_after_the_capped_attempts(
    apple, token_setting, user_factory, flaky_mail, settings
):
    settings.VPP_JOB_MAX_ATTEMPTS = 3
    users = [user_factory() for _ in range(2)]
    flaky_mail.refuse_connections = 1000

    job = run_job(invite(users), apple)

    assert job.status == JobStatus.DONE and (job.succeeded, job.failed) == (0, 2)
    reasons = set(JobItem.objects.filter(job=job).values_list("reason", flat=True))
    assert reasons == {
        "Gave up after 3 attempts (Apple or the mail/push service kept failing, or the worker kept stopping)"
    }
    assert not mail.outbox


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (ConnectionRefusedError(111, "refused"), True),
        (smtplib.SMTPServerDisconnected("gone"), True),
        (smtplib.SMTPResponseException(421, b"try later"), True),
        (smtplib.SMTPResponseException(554, b"no"), False),
        (smtplib.SMTPRecipientsRefused({"a@x.org": (450, b"busy")}), True),
        (smtplib.SMTPRecipientsRefused({"a@x.org": (450, b"busy"), "b@x.org": (550, b"no")}), False),
        (smtplib.SMTPSenderRefused(553, b"bad sender", "me@x.org"), False),
        (ValueError("bad header"), False),
    ],
)
def test_it_tells_mail_errors_that_may_pass_from_final_ones(exc, transient):
    assert email_error_transient(exc) is transient


def test_the_job_panel_says_why_invitations_wait_and_when_they_are_tried_again(
    admin_client, apple, token_setting, user_factory, flaky_mail
):
    from vpp.jobs import engine as jobs
    from vpp.models import Job

    flaky_mail.refuse_connections = 1
    job = invite([user_factory()])
    jobs.job_dispatch(job_id=job.pk, client=apple)
    with pytest.raises(jobs.JobDeferred):
        jobs.job_process_chunk(job_id=job.pk, phase="invite", chunk=0, client=apple)

    job.refresh_from_db()
    assert job.delivery_retry_until and "Connection refused" in job.delivery_retry_reason
    html = admin_client.get(f"/vpp/jobs/{job.pk}/panel/", headers={"HX-Request": "true"}).content.decode()
    assert "Some invitations could not be sent yet" in html and "Connection refused" in html
    Job.objects.filter(pk=job.pk).update(delivery_retry_until=timezone.now() - timedelta(seconds=1))
    html = admin_client.get(f"/vpp/jobs/{job.pk}/panel/", headers={"HX-Request": "true"}).content.decode()
    assert "Some invitations could not be sent yet" not in html  # its time has come: the chunk is retrying

    job = run_job(job, apple)
    assert job.succeeded == 1
    assert Job.objects.filter(pk=job.pk, delivery_retry_until=None, delivery_retry_reason="").exists()
