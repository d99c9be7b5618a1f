"""What a job waits for, said on its panel, and the sweeper that resumes it (issue 10, items 4
and 5; docs/operations.md#job-panel, #recovery). Driven in-process against the sandbox over HTTP;
the real-worker versions are in test_recovery_worker.py."""

from __future__ import annotations

from datetime import timedelta

import pytest
from celery import current_app
from django.contrib.auth.models import Permission
from django.utils import timezone

from tests.support.job_loop import run_job
from tests.support.sandbox import store_sandbox_token
from users.models import User
from users.selectors import UserSelection
from vpp.apple import ratelimit
from vpp.content_token import vpp_client
from vpp.jobs import engine
from vpp.jobs.engine import job_create
from vpp.jobs.plan import vpp_plan_build
from vpp.models import ItemStatus, Job, JobAction, JobItem, JobStatus

pytestmark = [pytest.mark.django_db]


@pytest.fixture
def sandbox_setting(vpp_sandbox, settings):
    settings.VPP_EVENT_POLL_INTERVAL = 1
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    return store_sandbox_token(vpp_sandbox)


@pytest.fixture
def panel(client, django_user_model):
    admin = django_user_model.objects.create_user("admin", password=None)
    admin.user_permissions.add(Permission.objects.get(codename="invite_vppuser"))
    client.force_login(admin)
    return lambda job: client.get(f"/vpp/jobs/{job.pk}/panel/", HTTP_HX_REQUEST="true").content.decode()


@pytest.fixture
def published(monkeypatch):
    sent: list[int] = []
    monkeypatch.setattr(current_app, "send_task", lambda name, args=None, **kw: sent.append(args[0]))
    return sent


def start(users):
    chosen = User.objects.filter(pk__in=[u.pk for u in users])
    plan = vpp_plan_build(action=JobAction.INVITE, users=chosen, channel="email")
    return job_create(plan=plan, actor=None, selection=UserSelection(ids=tuple(u.pk for u in users)))


@pytest.mark.sandbox
def test_only_the_users_whose_create_answer_was_lost_wait_for_apples_rule(
    vpp_sandbox, sandbox_setting, user_factory, panel
):
    users = [user_factory() for _ in range(4)]
    job = start(users)
    # A worker died after sending this user's create and before the answer was stored; Apple
    # does not show the user (yet): Apple's rule holds it back for 10 minutes, nobody else.
    lost = JobItem.objects.get(job=job, user=users[0])
    JobItem.objects.filter(pk=lost.pk).update(request_sent_at=timezone.now() - timedelta(seconds=30))
    job = run_job(job, vpp_client(sandbox_setting), max_rounds=6)
    statuses = dict(JobItem.objects.filter(job=job).values_list("user_id", "status"))
    assert statuses.pop(users[0].pk) == ItemStatus.PENDING
    assert set(statuses.values()) == {ItemStatus.SUCCEEDED}, statuses
    assert not job.finished
    html = panel(job)
    assert "Apple&#x27;s 10-minute rule: the answer to the create of 1 user(s) was lost" in html, html
    assert "is sent again from" in html and "Waiting since" in html
    created = {u["clientUserId"] for e in vpp_sandbox.state("events") for u in e["request"].get("users", [])}
    assert str(lost.vpp_user.client_user_id) not in created  # never sent within Apple's 10 minutes


def _stale(job, seconds=120):
    return timezone.now() - timedelta(seconds=seconds)


def test_the_sweeper_takes_over_a_dead_chunk_while_other_chunks_of_the_job_live(user_factory, published):
    job = Job.objects.create(action=JobAction.INVITE, status=JobStatus.RUNNING, heartbeat_at=timezone.now())
    live = JobItem.objects.create(job=job, user=user_factory(), status=ItemStatus.IN_FLIGHT, claimed_at=timezone.now())
    assert engine.jobs_sweep() == [] and published == []
    dead = JobItem.objects.create(job=job, user=user_factory(), status=ItemStatus.IN_FLIGHT, claimed_at=_stale(job))
    assert engine.jobs_sweep() == [job.pk] and published == [job.pk]
    assert engine.jobs_sweep() == []  # once: the sweep moved the heartbeat on
    assert live.pk != dead.pk


def test_the_sweeper_leaves_a_job_waiting_for_apple_alone_until_its_wait_is_long_over(published):
    now = timezone.now()
    job = Job.objects.create(
        action=JobAction.SYNC_ALL,
        status=JobStatus.RUNNING,
        heartbeat_at=_stale(None),
        wait_reason="Apple asked us to wait",
        wait_until=now + timedelta(minutes=5),
    )
    assert engine.jobs_sweep() == []
    Job.objects.filter(pk=job.pk).update(wait_until=_stale(None))  # the wait ended and nobody resumed it
    assert engine.jobs_sweep() == [job.pk]


def test_the_panel_says_a_worker_stopped_and_when_another_takes_over(panel, settings):
    settings.VPP_JOB_STALE_SECONDS, settings.VPP_JOB_SWEEP_SECONDS = 30, 10
    beat = timezone.now() - timedelta(seconds=35)
    job = Job.objects.create(action=JobAction.INVITE, status=JobStatus.RUNNING, heartbeat_at=beat)
    html = panel(job)
    assert f"The worker running this job stopped reporting at {beat:%H:%M:%S} UTC." in html
    assert f"A running worker takes it over by {beat + timedelta(seconds=40):%H:%M:%S} UTC." in html
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=5))
    assert "No worker has taken it over yet: check that a worker is running" in panel(job)


@pytest.mark.sandbox
def test_a_redis_outage_inside_a_job_is_blamed_on_redis_not_apple(sandbox_setting, user_factory, panel, settings):
    dead_redis = ratelimit.RedisRateLimiter.from_url("redis://127.0.0.1:1/0")
    client = vpp_client(sandbox_setting, rate_limiter=dead_redis, max_retries=0)
    job = run_job(start([user_factory()]), client, max_rounds=2)
    html = panel(job)
    assert "Redis (the shared rate limiter and message broker) is unreachable (ConnectionError)." in html, html
    assert "Next try at" in html and "Apple asked us to wait" not in html
