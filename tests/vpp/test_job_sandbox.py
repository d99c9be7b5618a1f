"""The job services against the sandbox over real HTTP, driven in-process (the worker test runs them for real)."""

from __future__ import annotations

import pytest
from django.core import mail

from tests.support.job_loop import run_job
from users.models import User
from users.selectors import UserSelection
from vpp.content_token import vpp_client
from vpp.jobs import engine as jobs
from vpp.jobs import leases as job_lease
from vpp.jobs import readback
from vpp.jobs.engine import job_create
from vpp.jobs.plan import vpp_plan_build
from vpp.models import ItemStatus, Job, JobAction, JobItem, JobStatus, VppUser, VppUserStatus

pytestmark = [pytest.mark.django_db, pytest.mark.sandbox]


def start(action, users, channel="email"):
    plan = vpp_plan_build(action=action, users=User.objects.filter(pk__in=[u.pk for u in users]), channel=channel)
    return job_create(plan=plan, actor=None, selection=UserSelection(ids=tuple(u.pk for u in users)))


def client(setting):
    return vpp_client(setting)


def test_it_invites_accepts_syncs_deletes_and_reinvites(vpp_sandbox, sandbox_setting, user_factory):
    users = [user_factory() for _ in range(3)]
    job = run_job(start(JobAction.INVITE, users), client(sandbox_setting))
    assert (job.status, job.succeeded) == (JobStatus.DONE, 3), list(JobItem.objects.values("status", "reason"))
    codes = {vu.invite_code for vu in VppUser.objects.all()}
    assert "" not in codes and len(codes) == 3
    assert len(mail.outbox) == 3
    assert all(any(code in m.body for code in codes) for m in mail.outbox)

    first = VppUser.objects.get(user=users[0])
    vpp_sandbox.accept_invitation(first.invite_code)
    job = run_job(start(JobAction.SYNC, users), client(sandbox_setting))
    assert job.succeeded == 3
    first.refresh_from_db()
    assert first.status == VppUserStatus.ASSOCIATED and first.id_hash

    job = run_job(start(JobAction.DELETE, users[:2]), client(sandbox_setting))
    assert job.succeeded == 2, list(JobItem.objects.filter(job=job).values("status", "reason"))
    assert VppUser.objects.filter(status=VppUserStatus.RETIRED).count() == 2
    apple = {u["clientUserId"]: u for u in vpp_sandbox.users()}
    assert apple[str(first.client_user_id)]["status"] == "Retired"
    assignments = [a for a in vpp_sandbox.state("assignments") if a.get("clientUserId") == str(first.client_user_id)]
    assert assignments == []

    job = run_job(start(JobAction.INVITE, users), client(sandbox_setting))
    assert job.succeeded == 3
    assert set(VppUser.objects.values_list("status", flat=True)) == {VppUserStatus.INVITED}
    # 3 first creates + 2 retired users created again; the invited one was not created twice
    assert vpp_sandbox.counters()["users_created"] == 5


def test_it_fails_the_job_clearly_when_the_token_is_expired(vpp_sandbox, sandbox_setting, user_factory):
    users = [user_factory() for _ in range(2)]
    vpp_sandbox.expire_token()
    job = run_job(start(JobAction.INVITE, users), client(sandbox_setting))
    assert job.status == JobStatus.FAILED
    assert "expired" in job.error.lower()
    assert set(JobItem.objects.filter(job=job).values_list("status", flat=True)) == {ItemStatus.FAILED}


def test_it_keeps_every_event_when_apple_lowers_max_users_mid_job(vpp_sandbox, sandbox_setting, user_factory):
    users = [user_factory() for _ in range(5)]
    apple = client(sandbox_setting)
    apple.service_config()  # cached with maxUsers 100: the job batches all five together
    vpp_sandbox.control(limits={"maxUsers": 2})  # Apple answers 9714; the client re-reads and splits 2+2+1
    job = run_job(start(JobAction.INVITE, users), apple)
    assert (job.status, job.succeeded) == (JobStatus.DONE, 5), list(JobItem.objects.values("status", "reason"))
    assert len(set(JobItem.objects.values_list("apple_event_id", flat=True))) == 3
    assert len(vpp_sandbox.users()) == 5


def created_not_read_back(vpp_sandbox, apple, settings, users, chunks):
    """An invite job whose chunks have all created their users at Apple, none read back yet."""
    settings.VPP_EVENT_POLL_INTERVAL = 10_000  # longer than the wait budget: a pending event defers the chunk
    vpp_sandbox.control(pending_seconds=600)
    job = start(JobAction.INVITE, users)
    assert jobs.job_dispatch(job_id=job.pk, client=apple) == [("invite", chunk) for chunk in chunks]
    for chunk in chunks:
        with pytest.raises(jobs.JobDeferred):
            jobs.job_process_chunk(job_id=job.pk, phase="invite", chunk=chunk, client=apple)
    vpp_sandbox.advance(force=True)
    Job.objects.filter(pk=job.pk).update(retry_after_until=None)
    return job


def user_listings(vpp_sandbox) -> int:
    return vpp_sandbox.counters()["endpoints"].get("GET /mdm/v2/users", 0)


def test_a_listing_stores_the_codes_of_later_chunks_so_they_need_none(
    vpp_sandbox, sandbox_setting, user_factory, settings
):
    # Two chunks whose creates both reach Apple before either reads back (as with parallel workers):
    # the first listing carries both chunks' codes, so the second chunk lists nothing again.
    settings.VPP_JOB_CHUNK_SIZE = 3
    apple = client(sandbox_setting)
    job = created_not_read_back(vpp_sandbox, apple, settings, [user_factory() for _ in range(6)], (0, 1))
    listings_before = user_listings(vpp_sandbox)

    for chunk in (0, 1):
        jobs.job_process_chunk(job_id=job.pk, phase="invite", chunk=chunk, client=apple)

    job.refresh_from_db()
    assert (job.status, job.succeeded) == (JobStatus.DONE, 6), list(JobItem.objects.values("status", "reason"))
    assert user_listings(vpp_sandbox) - listings_before == 1
    assert vpp_sandbox.counters()["users_created"] == 6
    assert len(mail.outbox) == 6


def test_a_chunk_waits_for_another_chunks_listing_instead_of_listing_the_same_users(
    vpp_sandbox, sandbox_setting, user_factory, settings, monkeypatch
):
    apple = client(sandbox_setting)
    job = created_not_read_back(vpp_sandbox, apple, settings, [user_factory() for _ in range(4)], (0,))
    other = job_lease.lease_claim(job, job_lease.READBACK)  # another chunk is listing right now ...
    assert other and job_lease.lease_claim(job, job_lease.READBACK) is None

    waited = []

    def other_chunk_lists(seconds):  # ... and finishes while this one waits
        waited.append(seconds)
        readback._list_since_watermark(job, apple)
        job_lease.lease_release(job, job_lease.READBACK, other)

    monkeypatch.setattr(job_lease.time, "sleep", other_chunk_lists)
    listings_before = user_listings(vpp_sandbox)
    jobs.job_process_chunk(job_id=job.pk, phase="invite", chunk=0, client=apple)

    job.refresh_from_db()
    assert (job.status, job.succeeded) == (JobStatus.DONE, 4), list(JobItem.objects.values("status", "reason"))
    assert len(waited) == 1
    assert user_listings(vpp_sandbox) - listings_before == 1  # the other chunk's
    assert job.readback_lease_until is None
