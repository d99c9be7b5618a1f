"""Issue 11.4: another MDM takes the organizational unit mid-flight (sandbox over real HTTP).

kmconsole claims the unit and invites users; another MDM then writes its own mdmInfo with the
same token. Every Apple answer naming another manager stops the job or the sync before its
next write, records the health "managed by another MDM" (the banner) and fails what is left.
"""

from __future__ import annotations

import uuid

import pytest

from tests.support.job_loop import run_job
from tests.support.users import make_user
from users.models import User
from users.selectors import UserSelection
from vpp.apple.client import VppClient
from vpp.apple.errors import OtherManagerError
from vpp.apple.types import RequestUser
from vpp.content_token import vpp_client
from vpp.jobs.engine import job_create
from vpp.jobs.plan import vpp_plan_build
from vpp.models import (
    ItemStatus,
    JobAction,
    JobItem,
    JobStatus,
    SyncResult,
    SyncSchedule,
    TokenHealth,
    VppServerSetting,
    VppUserStatus,
)
from vpp.selectors import token_banner
from vpp.services import sync as sync_service

pytestmark = [pytest.mark.django_db, pytest.mark.sandbox]

WRITES = ("POST /mdm/v2/users/create", "POST /mdm/v2/users/update", "POST /mdm/v2/users/retire")
WRITES += ("POST /mdm/v2/assets/revoke",)


def start(action, users):
    plan = vpp_plan_build(action=action, users=User.objects.filter(pk__in=[u.pk for u in users]), channel="email")
    return job_create(plan=plan, actor=None, selection=UserSelection(ids=tuple(u.pk for u in users)))


def writes(vpp_sandbox) -> int:
    endpoints = vpp_sandbox.counters()["endpoints"]
    return sum(endpoints.get(name, 0) for name in WRITES)


def invited_and_accepted(vpp_sandbox, count=2):
    users = [make_user(f"Person {n}") for n in range(count)]
    job = run_job(start(JobAction.INVITE, users), vpp_client())
    assert (job.status, job.succeeded) == (JobStatus.DONE, count)
    for user in users:
        vpp_sandbox.accept_invitation(user.vpp_user.invite_code)
    return users


def assert_stopped_by_other_mdm(job):
    setting = VppServerSetting.load()
    assert job.status == JobStatus.FAILED
    assert "Jamf Pro" in job.error and "another device management service" in job.error
    assert (setting.token_health, setting.other_mdm_name) == (TokenHealth.OTHER_MDM, "Jamf Pro")
    banner = token_banner(setting)
    assert banner and "Jamf Pro" in banner["text"]


def test_delete_from_vpp_stops_before_writing_when_another_mdm_took_the_unit(vpp_sandbox, sandbox_unit):
    users = invited_and_accepted(vpp_sandbox)
    vpp_sandbox.claim_as_other_mdm(name="Jamf Pro")
    before = writes(vpp_sandbox)

    job = run_job(start(JobAction.DELETE, users), vpp_client())

    assert_stopped_by_other_mdm(job)
    assert writes(vpp_sandbox) == before  # not one revoke or retire reached Apple
    assert {r["status"] for r in vpp_sandbox.users()} == {"Associated"}
    items = JobItem.objects.filter(job=job)
    assert {i.status for i in items} == {ItemStatus.FAILED}
    assert all("Jamf Pro" in i.reason for i in items)
    for user in users:
        user.vpp_user.refresh_from_db()
        assert user.vpp_user.status == VppUserStatus.INVITED  # as it was: nothing retired


def test_the_full_sync_stops_before_writing_when_another_mdm_took_the_unit(
    vpp_sandbox, sandbox_unit, django_capture_on_commit_callbacks
):
    users = invited_and_accepted(vpp_sandbox)
    User.objects.filter(pk=users[0].pk).update(is_active=False)  # departed: the sync would retire them
    User.objects.filter(pk=users[1].pk).update(email="moved@example.com")  # changed: it would push it
    vpp_sandbox.claim_as_other_mdm(name="Jamf Pro")
    before = writes(vpp_sandbox)

    with django_capture_on_commit_callbacks(execute=False):
        started = sync_service.sync_start(actor=None, trigger="schedule")
    job = run_job(started.job, None)

    assert_stopped_by_other_mdm(job)
    assert writes(vpp_sandbox) == before
    assert SyncSchedule.load().last_result == SyncResult.FAILED
    assert "Jamf Pro" in SyncSchedule.load().last_detail
    # and the next run is refused up front, with the same sentence
    with pytest.raises(sync_service.SyncBlocked, match="Jamf Pro"):
        sync_service.sync_start(actor=None, trigger="schedule")


def test_a_job_already_running_stops_at_the_first_answer_naming_another_mdm(vpp_sandbox, sandbox_unit):
    # The other MDM writes while a Delete is between its revoke and its retire: the revoke's
    # event status names it, so the retire never goes out.
    users = invited_and_accepted(vpp_sandbox)
    client = vpp_client()
    real_revoke = client.revoke_assets

    def revoke_then_taken(**kwargs):
        events = real_revoke(**kwargs)
        vpp_sandbox.claim_as_other_mdm(name="Jamf Pro")
        return events

    client.revoke_assets = revoke_then_taken
    job = run_job(start(JobAction.DELETE, users), client)

    assert_stopped_by_other_mdm(job)
    assert vpp_sandbox.counters()["endpoints"].get("POST /mdm/v2/users/retire", 0) == 0
    assert {r["status"] for r in vpp_sandbox.users()} == {"Associated"}


def test_the_client_sends_nothing_after_an_answer_naming_another_manager(vpp_sandbox):
    ours = str(uuid.uuid4())
    client = VppClient(vpp_sandbox.token, base_url=vpp_sandbox.base_url, manager_id=ours)
    client.update_client_config(mdm_info={"id": ours, "name": "kmconsole", "metadata": "x"})
    vpp_sandbox.claim_as_other_mdm(name="Jamf Pro")

    # A write's answer is returned (Apple acted on it), and it stops the client ...
    (event_id,) = client.create_users([RequestUser(str(uuid.uuid4()))])
    assert client.other_manager.name == "Jamf Pro"
    sent = vpp_sandbox.counters()["total_requests"]
    with pytest.raises(OtherManagerError, match="Jamf Pro"):
        client.retire_users([str(uuid.uuid4())])
    with pytest.raises(OtherManagerError):
        client.event_status(event_id)
    assert vpp_sandbox.counters()["total_requests"] == sent  # ... nothing more was sent

    # A read raises at once.
    reader = VppClient(vpp_sandbox.token, base_url=vpp_sandbox.base_url, manager_id=ours)
    with pytest.raises(OtherManagerError, match="Jamf Pro"):
        list(reader.iter_users())
