"""Fault tests through a REAL Celery worker (tests/support/worker.py) and the sandbox over HTTP
(issue 10, items 4 and 5; docs/operations.md#what-the-fault-tests-prove).

- a worker SIGKILLed mid-job with the product's defaults (stale 30 s, sweep 10 s, Apple's
  10-minute rule, one 1000-user chunk) and no beat: the job resumes within 60 s of a new worker;
- Redis cut mid-job (a proxy in front of it, for the worker only): the panel names the broker;
- an Apple outage (503 + Retry-After): the panel says what the job waits for and until when;
- "Retry failed only" after a revoked token was replaced: no user goes to ``users/create`` twice.

The broker is the suite's Redis (REDIS_URL, or the private one tests/redis_session.py starts).
The only setting changed from the product's is the event poll interval (1 s instead of Apple's
30 s, as for every worker test: the sandbox allows it).
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
from celery import current_app
from django.contrib.auth.models import Permission
from kombu.exceptions import OperationalError

from tests.support.redis_db import redis_url
from tests.support.sandbox import store_sandbox_token
from tests.support.tcp_proxy import TcpProxy
from tests.support.users import make_users
from tests.support.worker import Worker, purge_queue, wait_until
from users.models import User
from users.selectors import UserSelection
from vpp import secrets
from vpp.jobs.engine import job_create, job_retry_failed
from vpp.jobs.plan import vpp_plan_build
from vpp.models import ItemStatus, JobAction, JobItem, JobStatus, TokenHealth, VppServerSetting

pytestmark = [pytest.mark.worker, pytest.mark.sandbox, pytest.mark.django_db(transaction=True)]

OPEN = (ItemStatus.PENDING, ItemStatus.IN_FLIGHT)


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
def worker(outbox):
    purge_queue()
    started: list[Worker] = []

    def start(**env) -> Worker:
        w = Worker(outbox=outbox, env={k: str(v) for k, v in env.items()}).start()
        started.append(w)
        return w

    yield start
    for w in started:
        w.kill()


@pytest.fixture
def panel(client, django_user_model):
    admin = django_user_model.objects.create_user("admin", password=None)
    admin.user_permissions.add(Permission.objects.get(codename="invite_vppuser"))
    client.force_login(admin)
    return lambda job: client.get(f"/vpp/jobs/{job.pk}/panel/", HTTP_HX_REQUEST="true").content.decode()


def start_job(users):
    plan = vpp_plan_build(
        action=JobAction.INVITE, users=User.objects.filter(pk__in=[u.pk for u in users]), channel="email"
    )
    return job_create(plan=plan, actor=None, selection=UserSelection(ids=tuple(u.pk for u in users)))


def finished(job, w, timeout):
    def done():
        job.refresh_from_db()
        return job.finished

    try:
        wait_until(done, timeout=timeout, message=f"job #{job.pk} to finish")
    except AssertionError:
        raise AssertionError(w.log_tail()) from None
    return job


def creates_per_user(vpp_sandbox) -> Counter:
    seen = Counter()
    for event in vpp_sandbox.state("events"):
        if event["eventType"] == "CREATE":
            seen.update(u["clientUserId"] for u in event["request"]["users"])
    return seen


def saying(html: str, *words: str) -> str | None:
    return html if all(word in html for word in words) else None


def closed_items(job) -> int:
    return JobItem.objects.filter(job=job).exclude(status__in=OPEN).count()


def test_a_killed_workers_job_resumes_within_60_s_of_a_new_worker_without_beat(vpp_sandbox, sandbox_token, worker):
    vpp_sandbox.control(pending_seconds=1.5, latency=0.05)  # the kill lands while creates are in flight
    users = make_users(300)
    w = worker()  # the product's defaults; no beat runs in these tests
    job = start_job(users)
    wait_until(lambda: vpp_sandbox.counters()["create_calls"] >= 1, timeout=60, message="creates at Apple")
    w.kill()
    done_at_kill = closed_items(job)
    assert done_at_kill < 300
    vpp_sandbox.control(pending_seconds=0.1, latency=0.0)
    w2 = worker()
    began = time.monotonic()
    try:
        wait_until(lambda: closed_items(job) > done_at_kill, timeout=60, message="the job to resume")
    except AssertionError:
        raise AssertionError(f"not resumed within 60 s of the new worker:\n{w2.log_tail()}") from None
    resumed_after = time.monotonic() - began

    # The job goes on to the end, except users whose create was marked sent when the worker died
    # and that Apple never saw: only they wait Apple's 10-minute rule (VPP_CREATE_RECHECK_SECONDS).
    def settled():
        job.refresh_from_db()
        items = JobItem.objects.filter(job=job)
        waiting = items.filter(status=ItemStatus.PENDING, step="create", request_sent_at__isnull=False)
        others_open = items.filter(status__in=OPEN).exclude(pk__in=waiting.values("pk"))
        return job.finished or (not others_open.exists() and "10-minute rule" in job.wait_reason)

    try:
        wait_until(settled, timeout=240, message="every user but the lost creates to be done")
    except AssertionError:
        raise AssertionError(w2.log_tail()) from None
    counts = Counter(JobItem.objects.filter(job=job).values_list("status", flat=True))
    lost = JobItem.objects.filter(job=job, status=ItemStatus.PENDING).select_related("vpp_user")
    at_apple = {u["clientUserId"] for u in vpp_sandbox.users()}
    assert counts[ItemStatus.SUCCEEDED] + lost.count() == 300, (counts, resumed_after, w2.log_tail())
    assert not {str(item.vpp_user.client_user_id) for item in lost} & at_apple  # they never reached Apple
    assert set(creates_per_user(vpp_sandbox).values()) == {1}  # nobody created twice


def test_redis_cut_mid_job_the_panel_names_the_broker(vpp_sandbox, sandbox_token, worker, panel, monkeypatch):
    proxy, proxied = TcpProxy.for_redis(redis_url())
    try:
        vpp_sandbox.control(pending_seconds=2, latency=0.05)
        # This process publishes nothing: the worker's own sweeper publishes the job through the proxy.
        monkeypatch.setattr(current_app, "send_task", _broker_refuses)
        w = worker(REDIS_URL=proxied)
        job = start_job(make_users(60))
        wait_until(lambda: vpp_sandbox.counters()["create_calls"] >= 1, timeout=60, message="creates at Apple")
        proxy.cut()
        text = wait_until(lambda: saying(panel(job), "Redis", "unreachable"), timeout=90, message="Redis named")
        assert "Apple asked us to wait" not in text
        assert "Waiting since" in text
        proxy.restore()
        job = finished(job, w, timeout=180)
        assert job.status == JobStatus.DONE and job.succeeded == 60, w.log_tail()
        assert set(creates_per_user(vpp_sandbox).values()) == {1}
    finally:
        proxy.close()


def _broker_refuses(*args, **kwargs):
    raise OperationalError("this test process publishes nothing")


def test_an_apple_outage_shows_on_the_panel_with_its_wait(vpp_sandbox, sandbox_token, worker, panel):
    w = worker()
    vpp_sandbox.control(fail_next=2, fail_status=503, retry_after=20)
    job = start_job(make_users(3))
    try:
        text = wait_until(lambda: saying(panel(job), "Apple asked us to wait"), timeout=60, message="Apple's wait")
    except AssertionError:
        job.refresh_from_db()
        raise AssertionError((job.status, job.wait_reason, job.retry_after_until, w.log_tail())) from None
    assert "HTTP 503, Retry-After 20 s" in text and "Next try at" in text and "Waiting since" in text, text[-700:]
    assert "continues by itself" in text
    job = finished(job, w, timeout=120)
    assert (job.status, job.succeeded) == (JobStatus.DONE, 3), w.log_tail()
    assert "Apple asked us to wait" not in panel(job)


def test_retry_failed_after_a_revoked_token_was_replaced_never_creates_twice(vpp_sandbox, sandbox_token, worker):
    vpp_sandbox.control(pending_seconds=3)  # events still pending when the token is revoked
    users = make_users(20)
    w = worker()
    job = start_job(users)
    wait_until(lambda: vpp_sandbox.counters()["create_calls"] >= 1, timeout=60, message="creates at Apple")
    vpp_sandbox.revoke_token()
    job = finished(job, w, timeout=120)
    assert (job.status, job.failed) == (JobStatus.FAILED, 20), (job.error, w.log_tail())
    assert set(creates_per_user(vpp_sandbox).values()) == {1}
    # The admin uploads a new token; Apple kept the users the first job created.
    setting = VppServerSetting.load()
    setting.content_token_encrypted = secrets.encrypt(vpp_sandbox.mint_token())
    setting.token_health = TokenHealth.VALID
    setting.save()
    vpp_sandbox.control(pending_seconds=0.1)
    retry = finished(job_retry_failed(job=job, actor=None), w, timeout=120)
    assert (retry.status, retry.succeeded) == (JobStatus.DONE, 20), w.log_tail()
    assert set(creates_per_user(vpp_sandbox).values()) == {1}, "a user was sent to users/create twice"
