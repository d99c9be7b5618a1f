"""Issues 11.4 and 11.5 through a REAL Celery worker against the sandbox: the orphans job runs on
the one job engine, and a Delete from VPP stops when another MDM took the unit."""

from __future__ import annotations

import uuid

import pytest

from tests.support.sandbox import upload_sandbox_token
from tests.support.users import make_user
from tests.support.worker import Worker, purge_queue, wait_until
from users.models import User
from users.selectors import UserSelection
from vpp.apple.client import VppClient
from vpp.apple.types import RequestUser
from vpp.jobs.engine import job_create
from vpp.jobs.plan import vpp_plan_build
from vpp.models import Job, JobAction, JobStatus, SyncOrphan, TokenHealth, VppServerSetting, VppUserStatus
from vpp.services import orphans as orphan_service
from vpp.services import sync as sync_service

pytestmark = [pytest.mark.worker, pytest.mark.sandbox, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def worker(vpp_sandbox, tmp_path):
    upload_sandbox_token(vpp_sandbox)
    purge_queue()
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    running = Worker(outbox=outbox).start()
    yield running
    running.stop()


def finished(worker, job: Job, what: str) -> Job:
    try:
        wait_until(lambda: Job.objects.get(pk=job.pk).finished, timeout=60, message=what)
    except AssertionError:
        raise AssertionError(worker.log_tail()) from None
    job.refresh_from_db()
    return job


def test_an_orphan_retired_through_the_worker(vpp_sandbox, worker):
    earlier = VppClient(vpp_sandbox.token, base_url=vpp_sandbox.base_url)
    orphan_id = str(uuid.uuid4())
    earlier.wait_for_event(earlier.create_users([RequestUser(orphan_id)])[0], poll_interval=0.05)
    sync_job = finished(worker, sync_service.sync_start(actor=None, trigger="manual").job, "the full sync")
    orphan = SyncOrphan.objects.get(run__job=sync_job)

    plan = orphan_service.orphan_plan_build(run_job_id=sync_job.pk, orphan_ids=[orphan.pk], adopt={})
    job = finished(worker, orphan_service.orphans_act(plan=plan, run_job_id=sync_job.pk, actor=None), "orphans job")

    assert (job.status, job.succeeded) == (JobStatus.DONE, 1)
    assert next(r for r in vpp_sandbox.users() if r["clientUserId"] == orphan_id)["status"] == "Retired"


def test_a_delete_through_the_worker_stops_when_another_mdm_took_the_unit(vpp_sandbox, worker):
    users = [make_user(f"Person {n}") for n in range(2)]
    chosen = User.objects.filter(pk__in=[u.pk for u in users])
    plan = vpp_plan_build(action=JobAction.INVITE, users=chosen, channel="email")
    invited = finished(
        worker, job_create(plan=plan, actor=None, selection=UserSelection(ids=tuple(u.pk for u in users))), "the invite"
    )
    assert invited.succeeded == 2
    for user in users:
        user.refresh_from_db()
        assert user.vpp_user.status == VppUserStatus.INVITED
    vpp_sandbox.claim_as_other_mdm(name="Jamf Pro")

    plan = vpp_plan_build(action=JobAction.DELETE, users=User.objects.filter(pk__in=[u.pk for u in users]))
    job = job_create(plan=plan, actor=None, selection=UserSelection(ids=tuple(u.pk for u in users)))
    job = finished(worker, job, "the delete job")

    assert job.status == JobStatus.FAILED and "Jamf Pro" in job.error
    endpoints = vpp_sandbox.counters()["endpoints"]
    assert endpoints.get("POST /mdm/v2/assets/revoke", 0) == endpoints.get("POST /mdm/v2/users/retire", 0) == 0
    assert VppServerSetting.load().token_health == TokenHealth.OTHER_MDM
