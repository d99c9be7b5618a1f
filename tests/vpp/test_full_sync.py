"""Full and delta sync against the sandbox: changed emails, departed users, retired at Apple, orphans."""

from __future__ import annotations

import datetime as dt
import threading
import uuid

import pytest
from django.db import connection

from tests.support.job_loop import run_job
from tests.support.users import make_user
from users.models import User
from vpp.apple.client import VppClient
from vpp.apple.types import RequestUser
from vpp.models import (
    AuditEvent,
    Job,
    JobAction,
    JobStatus,
    SyncOrphan,
    SyncResult,
    SyncSchedule,
    TokenHealth,
    VppServerSetting,
    VppUser,
    VppUserStatus,
)
from vpp.services import setting as setting_service
from vpp.services import sync as sync_service

pytestmark = pytest.mark.sandbox


@pytest.fixture
def apple(vpp_sandbox, settings):
    settings.VPP_EVENT_POLL_INTERVAL = 1
    setting = VppServerSetting.load()
    setting.api_base_url = vpp_sandbox.base_url
    setting.save()
    setting_service.token_upload(data=vpp_sandbox.token, actor=None)
    return VppClient(vpp_sandbox.token, base_url=vpp_sandbox.base_url)


def vpp_user_named(apple, name, *, at_apple=True) -> VppUser:
    """An invited VPP user without devices, login and email from ``name``; created at Apple too unless told not."""
    user = make_user(
        name,
        login_id=name.lower(),
        email=f"{name.lower()}@example.com",
        devices=(),
        vpp_status=VppUserStatus.INVITED,
        at_apple=apple if at_apple else None,
    )
    return user.vpp_user


def apple_record(vpp_sandbox, vpp_user, *, active=True):
    rows = [r for r in vpp_sandbox.users() if r["clientUserId"] == str(vpp_user.client_user_id)]
    return next(r for r in rows if (r["status"] != "Retired") == active)


def run_sync(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        started = sync_service.sync_start(actor=None, trigger="manual")
    assert started.started
    return run_job(started.job, None)


@pytest.mark.django_db
def test_it_runs_a_full_then_a_delta_sync(apple, vpp_sandbox, django_capture_on_commit_callbacks):
    accepted = vpp_user_named(apple, "Ada")
    waiting = vpp_user_named(apple, "Bob")
    retired_at_apple = vpp_user_named(apple, "Cy")
    moved = vpp_user_named(apple, "Dee")
    departed = vpp_user_named(apple, "Eve")
    deactivated = vpp_user_named(apple, "Fay")
    orphan_id = str(uuid.uuid4())
    apple.wait_for_event(
        apple.create_users([RequestUser(client_user_id=orphan_id, email="o@example.com")])[0], poll_interval=0.05
    )
    vpp_sandbox.accept_invitation(apple_record(vpp_sandbox, accepted)["inviteCode"], "ada@icloud.example")
    apple.wait_for_event(apple.retire_users([str(retired_at_apple.client_user_id)])[0], poll_interval=0.05)
    User.objects.filter(pk=moved.user_id).update(email="dee.new@example.com")
    User.objects.filter(pk=departed.user_id).delete()
    User.objects.filter(pk=deactivated.user_id).update(is_active=False)

    job = run_sync(django_capture_on_commit_callbacks)

    assert (job.action, job.status, job.phase) == (JobAction.SYNC_ALL, JobStatus.DONE, "done")
    run = job.sync_run
    assert run.full and run.version_id
    assert VppServerSetting.load().users_version_id == run.version_id
    states = {v.pk: v for v in VppUser.objects.all()}
    assert states[accepted.pk].status == VppUserStatus.ASSOCIATED and states[accepted.pk].id_hash
    assert states[waiting.pk].status == VppUserStatus.INVITED and states[waiting.pk].invite_code
    assert states[retired_at_apple.pk].status == VppUserStatus.RETIRED
    assert states[departed.pk].status == VppUserStatus.RETIRED and states[departed.pk].user is None
    assert states[deactivated.pk].status == VppUserStatus.RETIRED
    assert apple_record(vpp_sandbox, moved)["email"] == "dee.new@example.com"
    assert states[moved.pk].apple_email == "dee.new@example.com"
    for gone in (departed, deactivated):
        assert not [
            r for r in vpp_sandbox.users() if r["clientUserId"] == str(gone.client_user_id) and r["status"] != "Retired"
        ]
    assert list(SyncOrphan.objects.filter(run=run).values_list("client_user_id", "email")) == [
        (orphan_id, "o@example.com")
    ]
    counts = run.counts
    assert counts["emails_pushed"] == 1 and counts["retired_at_apple"] == 2 and counts["orphans"] == 1
    assert counts["failed"] == 0
    schedule = SyncSchedule.load()
    assert schedule.last_result == SyncResult.SUCCEEDED and schedule.running_job_id is None
    assert schedule.last_counts["orphans"] == 1
    assert AuditEvent.objects.filter(action="vpp.sync_finished", job=job).exists()

    # Delta: only what changed at Apple since the stored versionId.
    vpp_sandbox.accept_invitation(states[waiting.pk].invite_code, "bob@icloud.example")
    delta = run_sync(django_capture_on_commit_callbacks)
    assert not delta.sync_run.full and delta.sync_run.since_version_id == run.version_id
    assert delta.sync_run.counts["apple_users"] < counts["apple_users"]
    assert VppUser.objects.get(pk=waiting.pk).status == VppUserStatus.ASSOCIATED
    assert VppServerSetting.load().users_version_id == delta.sync_run.version_id


@pytest.mark.django_db
def test_it_streams_many_pages(apple, vpp_sandbox, django_capture_on_commit_callbacks):
    users = [vpp_user_named(apple, f"U{i}", at_apple=False) for i in range(7)]
    apple.wait_for_event(
        apple.create_users([RequestUser(client_user_id=str(u.client_user_id), email=u.apple_email) for u in users])[0],
        poll_interval=0.05,
    )
    VppUser.objects.update(status=VppUserStatus.PENDING)
    vpp_sandbox.control(page_size=2)
    vpp_sandbox.reset(state=False, faults=False, counters=True)
    job = run_sync(django_capture_on_commit_callbacks)
    assert job.sync_run.counts["apple_users"] == 7
    assert set(VppUser.objects.values_list("status", flat=True)) == {VppUserStatus.INVITED}
    assert vpp_sandbox.counters()["endpoints"]["GET /mdm/v2/users"] == 4  # 2+2+2+1


@pytest.mark.django_db
def test_it_shows_the_running_sync_instead_of_starting_another(apple, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        first = sync_service.sync_start(actor=None)
        second = sync_service.sync_start(actor=None)
    assert first.started and not second.started and second.job.pk == first.job.pk
    assert len(callbacks) == 1
    assert Job.objects.filter(action=JobAction.SYNC_ALL).count() == 1
    run_job(first.job, None)
    assert sync_service.sync_start(actor=None).started  # finished: a new one may start


@pytest.mark.django_db
def test_it_refuses_to_sync_with_a_blocked_token(apple):
    VppServerSetting.objects.filter(pk=1).update(token_health=TokenHealth.REVOKED)
    with pytest.raises(sync_service.SyncBlocked, match="revoked"):
        sync_service.sync_start(actor=None)


@pytest.mark.django_db
def test_it_records_a_token_revoked_mid_sync(apple, vpp_sandbox, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        started = sync_service.sync_start(actor=None)
    vpp_sandbox.revoke_token()
    job = run_job(started.job, None)
    assert job.status == JobStatus.FAILED and "revoked" in job.error.lower()
    assert VppServerSetting.load().token_health == TokenHealth.REVOKED
    assert SyncSchedule.load().last_result == SyncResult.FAILED


@pytest.mark.django_db(transaction=True)
def test_it_starts_one_sync_when_two_requests_race(apple, monkeypatch):
    monkeypatch.setattr(sync_service, "job_enqueue", lambda *, job_id: True)
    barrier = threading.Barrier(3)
    results = []

    def start():
        try:
            barrier.wait()
            results.append(sync_service.sync_start(actor=None))
        finally:
            connection.close()

    threads = [threading.Thread(target=start) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.started for r in results) == [False, False, True]
    assert len({r.job.pk for r in results}) == 1
    assert Job.objects.filter(action=JobAction.SYNC_ALL).count() == 1


@pytest.mark.django_db
def test_a_sync_whose_worker_vanished_is_resumed_by_the_sweeper_not_replaced(
    apple, settings, django_capture_on_commit_callbacks, monkeypatch
):
    from vpp.jobs import engine

    settings.VPP_JOB_STALE_SECONDS = 60
    with django_capture_on_commit_callbacks(execute=False):
        first = sync_service.sync_start(actor=None)
    # A worker claimed the read phase, then died: no heartbeat for longer than the stale time.
    long_ago = first.job.created_at - dt.timedelta(seconds=120)
    Job.objects.filter(pk=first.job.pk).update(
        status=JobStatus.RUNNING, phase="read_all", phase_token="dead-worker", heartbeat_at=long_ago
    )
    with django_capture_on_commit_callbacks(execute=False):
        second = sync_service.sync_start(actor=None)
    assert not second.started and second.job.pk == first.job.pk  # still one sync per token
    enqueued = []
    monkeypatch.setattr(engine, "job_enqueue", lambda *, job_id: enqueued.append(job_id) or True)
    assert engine.jobs_sweep() == [first.job.pk] and enqueued == [first.job.pk]
    job = run_job(first.job, None)
    assert (job.status, job.phase_token) == (JobStatus.DONE, "")
    schedule = SyncSchedule.load()
    assert schedule.running_job_id is None and schedule.last_result == SyncResult.SUCCEEDED


@pytest.mark.django_db
def test_a_broker_that_is_down_is_retried_by_the_sweeper_as_for_every_job(
    apple, monkeypatch, django_capture_on_commit_callbacks
):
    from celery import current_app

    from vpp.jobs import engine

    def refuse(*args, **kwargs):
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(current_app, "send_task", refuse)
    with django_capture_on_commit_callbacks(execute=True):
        started = sync_service.sync_start(actor=None)
    job = Job.objects.get(pk=started.job.pk)
    assert job.status == JobStatus.QUEUED and job.enqueue_error  # shown on the job, kept for the sweeper
    assert SyncSchedule.load().running_job_id == job.pk
    sent = []
    monkeypatch.setattr(current_app, "send_task", lambda name, args: sent.append((name, args)))
    assert engine.jobs_sweep() == [job.pk]
    assert sent == [("vpp.job_dispatch", [job.pk])]
    assert Job.objects.get(pk=job.pk).enqueue_error == ""


@pytest.mark.django_db
@pytest.mark.parametrize("page_size", [1, 500])
def test_it_keeps_a_reinvited_user_active_despite_the_retired_history_row(
    apple, vpp_sandbox, django_capture_on_commit_callbacks, page_size
):
    again = vpp_user_named(apple, "Gil")
    cid = str(again.client_user_id)
    apple.wait_for_event(apple.retire_users([cid])[0], poll_interval=0.05)
    apple.wait_for_event(apple.create_users([RequestUser(cid, email="gil@example.com")])[0], poll_interval=0.05)
    assert sorted(r["status"] for r in vpp_sandbox.users()) == ["Registered", "Retired"]
    vpp_sandbox.control(page_size=page_size)
    run_sync(django_capture_on_commit_callbacks)
    again.refresh_from_db()
    assert again.status == VppUserStatus.INVITED
    assert again.invite_code == apple_record(vpp_sandbox, again)["inviteCode"]


@pytest.mark.django_db
def test_it_lists_orphans_on_the_sync_job_page(apple, client, admin_user, django_capture_on_commit_callbacks):
    from django.urls import reverse

    moved = vpp_user_named(apple, "Hal")
    User.objects.filter(pk=moved.user_id).update(email="hal.new@example.com")
    orphan_id = str(uuid.uuid4())
    apple.wait_for_event(
        apple.create_users([RequestUser(client_user_id=orphan_id, email="x@example.com")])[0], poll_interval=0.05
    )
    job = run_sync(django_capture_on_commit_callbacks)
    client.force_login(admin_user)
    html = client.get(reverse("jobs:detail", args=[job.pk])).content.decode()
    assert "Full sync" in html and orphan_id in html and "x@example.com" in html
    assert "Hal (hal)" in html  # the per-user result of the email pushed to Apple
    assert (job.total, job.succeeded) == (1, 1)
    settings_page = client.get(reverse("vpp:server-setting")).content.decode()
    assert "1 Apple user match" in settings_page and reverse("jobs:detail", args=[job.pk]) in settings_page
