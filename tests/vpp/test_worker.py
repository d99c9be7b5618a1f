"""Bulk jobs through a REAL Celery worker process, a real broker and the sandbox over HTTP.

The broker is Redis: REDIS_URL when set (CI's first pass), otherwise the embedded default's
private Redis (tests/redis_session.py, docs/embedded.md).
"""

from __future__ import annotations

import email
import re
from collections import Counter

import pytest

from tests.support.sandbox import store_sandbox_token
from tests.support.users import make_users
from tests.support.vpp_api import max_in_any_window
from tests.support.worker import Worker, broker_tasks, purge_queue, read_outbox, wait_until
from users.models import User
from users.selectors import UserSelection
from vpp.jobs.engine import job_create
from vpp.jobs.plan import vpp_plan_build
from vpp.models import ItemStatus, Job, JobAction, JobItem, JobStatus, VppUser, VppUserStatus

pytestmark = [pytest.mark.worker, pytest.mark.sandbox, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def sandbox_token(vpp_sandbox):
    vpp_sandbox.control(pending_seconds=0.1)
    return store_sandbox_token(vpp_sandbox)


@pytest.fixture
def outbox(tmp_path):
    path = tmp_path / "outbox"
    path.mkdir()
    return path


@pytest.fixture
def worker(outbox, django_capture_on_commit_callbacks):
    purge_queue()
    started: list[Worker] = []

    def start(**env) -> Worker:
        w = Worker(outbox=outbox, env={k: str(v) for k, v in env.items()}).start()
        started.append(w)
        return w

    yield start
    for w in started:
        w.kill()  # nothing to finish: the test has checked everything it needs


def start_job(action, users):
    plan = vpp_plan_build(action=action, users=User.objects.filter(pk__in=[u.pk for u in users]), channel="email")
    return job_create(plan=plan, actor=None, selection=UserSelection(ids=tuple(u.pk for u in users)))


def finished(job, w, timeout=60):
    def done():
        job.refresh_from_db()
        return job.finished

    try:
        wait_until(done, timeout=timeout, message=f"job #{job.pk} to finish")
    except AssertionError:
        raise AssertionError(w.log_tail()) from None
    return job


def creates_per_user(vpp_sandbox) -> Counter:
    """How many CREATE requests named each clientUserId (must never be more than one per round)."""
    seen = Counter()
    for event in vpp_sandbox.state("events"):
        if event["eventType"] == "CREATE":
            seen.update(u["clientUserId"] for u in event["request"]["users"])
    return seen


def test_it_invites_accepts_syncs_deletes_and_reinvites_through_the_worker(
    vpp_sandbox, sandbox_token, worker, outbox, user_factory
):
    w = worker()
    users = [user_factory() for _ in range(3)]
    job = finished(start_job(JobAction.INVITE, users), w)
    assert (job.status, job.succeeded, job.failed) == (JobStatus.DONE, 3, 0), w.log_tail()
    vpp_users = {vu.user_id: vu for vu in VppUser.objects.all()}
    assert {vu.status for vu in vpp_users.values()} == {VppUserStatus.INVITED}
    assert all(vu.invite_code for vu in vpp_users.values())

    messages = [email.message_from_string(text.strip()) for text in read_outbox(outbox)]
    assert len(messages) == 3
    by_recipient = {m["To"]: m for m in messages}
    for user in users:
        message = by_recipient[user.email]
        text = message.get_payload()[0].get_payload(decode=True).decode()
        link = re.search(r"https?://\S+", text).group(0)
        assert vpp_users[user.pk].invite_code in link
        assert message.get_payload()[1].get_content_type() == "text/html"

    # The invitation page of the sandbox: accept one.
    accepted = vpp_users[users[0].pk]
    vpp_sandbox.accept_invitation(accepted.invite_code)
    job = finished(start_job(JobAction.SYNC, users), w)
    assert job.succeeded == 3
    accepted.refresh_from_db()
    assert accepted.status == VppUserStatus.ASSOCIATED

    job = finished(start_job(JobAction.DELETE, users), w)
    assert job.succeeded == 3, list(JobItem.objects.filter(job=job).values("reason"))
    assert set(VppUser.objects.values_list("status", flat=True)) == {VppUserStatus.RETIRED}
    apple_active = [u for u in vpp_sandbox.users() if u["status"] in ("Registered", "Associated")]
    assert apple_active == []
    assert not [a for a in vpp_sandbox.state("assignments") if a.get("clientUserId") == str(accepted.client_user_id)]

    job = finished(start_job(JobAction.INVITE, users), w)
    assert job.succeeded == 3
    assert len(read_outbox(outbox)) == 6
    assert max(creates_per_user(vpp_sandbox).values()) == 2  # once per round: invite, re-create after retire


def test_it_finishes_a_1000_user_job_with_every_item_accounted_for(
    vpp_sandbox, sandbox_token, worker, outbox, user_factory
):
    vpp_sandbox.control(pending_seconds=0.0)
    users = make_users(1000)
    w = worker(VPP_JOB_CHUNK_SIZE=250)
    job = finished(start_job(JobAction.INVITE, users), w, timeout=240)
    counts = Counter(JobItem.objects.filter(job=job).values_list("status", flat=True))
    assert counts == {ItemStatus.SUCCEEDED: 1000}, (counts, w.log_tail())
    assert vpp_sandbox.counters()["users_created"] == 1000
    assert set(creates_per_user(vpp_sandbox).values()) == {1}
    assert len(read_outbox(outbox)) == 1000


def test_it_survives_a_worker_killed_mid_job_without_creating_anyone_twice(
    vpp_sandbox, sandbox_token, worker, outbox, user_factory
):
    # Slow Apple down so the kill lands while creates and event polls are in flight.
    vpp_sandbox.control(pending_seconds=1.5, latency=0.05)
    users = make_users(300)
    env = {"VPP_JOB_CHUNK_SIZE": 50, "VPP_JOB_STALE_SECONDS": 3, "VPP_CREATE_RECHECK_SECONDS": 8}
    w = worker(**env)
    job = start_job(JobAction.INVITE, users)
    wait_until(lambda: vpp_sandbox.counters()["create_calls"] >= 2, timeout=60, message="creates at Apple")
    w.kill()
    job.refresh_from_db()
    assert not job.finished
    # The job's task is still in the broker (the one the dead worker ran stays unacknowledged:
    # acks_late), not lost: kombu's filesystem transport, the old embedded default, deleted a
    # message as soon as a worker read it.
    assert [args for task, args in broker_tasks() if task.startswith("vpp.job_") and re.match(rf"\[{job.pk}\b", args)]
    vpp_sandbox.control(pending_seconds=0.1, latency=0.0)
    w2 = worker(**env)
    job = finished(job, w2, timeout=120)
    counts = Counter(JobItem.objects.filter(job=job).values_list("status", flat=True))
    assert counts == {ItemStatus.SUCCEEDED: 300}, (counts, w2.log_tail())
    assert vpp_sandbox.counters()["users_created"] == 300
    assert set(creates_per_user(vpp_sandbox).values()) == {1}  # no clientUserId sent to create twice
    assert len(read_outbox(outbox)) == 300
    assert Job.objects.get(pk=job.pk).status == JobStatus.DONE


def test_it_waits_out_retry_after_from_apple(vpp_sandbox, sandbox_token, worker, user_factory):
    users = [user_factory() for _ in range(2)]
    vpp_sandbox.control(fail_next=3, fail_status=503, retry_after=2)
    w = worker()
    job = finished(start_job(JobAction.INVITE, users), w, timeout=60)
    assert (job.status, job.succeeded) == (JobStatus.DONE, 2), w.log_tail()
    assert vpp_sandbox.counters()["users_created"] == 2


def test_two_worker_processes_share_one_rate_limit_and_one_retry_after_pause(
    vpp_sandbox, sandbox_token, worker, outbox, settings
):
    """Apple's rate limit and Retry-After are per token, not per process (docs/embedded.md).

    Two workers of two processes each send an invite at 2 requests/s; midway, Apple answers one
    request 503 with Retry-After. In the embedded default (no REDIS_URL: the private Redis under
    var/) as in production, no one-second window may hold more than 2 arrivals at the sandbox and
    no request may arrive inside the Retry-After window, whichever process sent it.
    """
    rate, retry_after = 2, 3
    vpp_sandbox.control(limits={"maxRequestPerSecond": rate, "maxUsers": 5}, pending_seconds=0.1)
    settings.VPP_JOB_CHUNK_SIZE = 5  # eight chunks: the four worker processes all talk to Apple
    users = make_users(40)
    # Spread `rate` requests over 1.5 s instead of 1.05 s: the sandbox stamps arrivals, and on a
    # loaded machine the time between "admitted" and "arrived" varies by more than 50 ms.
    env = {"VPP_RATE_LIMIT_WINDOW_MS": 1500}
    workers = [worker(**env), worker(**env)]
    job = start_job(JobAction.INVITE, users)
    wait_until(lambda: vpp_sandbox.counters()["create_calls"] >= 2, timeout=60, message="creates at Apple")
    vpp_sandbox.control(fail_next=1, fail_status=503, retry_after=retry_after)
    job = finished(job, workers[0], timeout=180)
    assert (job.status, job.succeeded) == (JobStatus.DONE, 40), workers[1].log_tail()

    log = vpp_sandbox.counters()["requests"]
    timeline = [(round(r["t"] - log[0]["t"], 2), r["path"], r["status"]) for r in log]
    # Service Config carries no token (location None): Apple does not count it against the rate.
    assert max_in_any_window([r["t"] for r in log if r["location"]], 1.0) <= rate, timeline
    # The pause holds every request, Service Config included (vpp/apple/client.py _acquire_slot).
    [refused] = [r for r in log if r["status"] == 503]
    assert [r for r in log if refused["t"] < r["t"] < refused["t"] + retry_after] == [], timeline
