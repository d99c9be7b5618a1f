"""The mixed batch through a REAL Celery worker, a real broker and the sandbox over HTTP (issue 11.1).

Five users in one invite job, one of whom Apple refuses with 9717 naming that user: four are
invited, one fails with Apple's number and a plain reason, and the job page and CSV export say so.
"""

from __future__ import annotations

import csv
import io

import pytest
from django.urls import reverse

from vpp.models import ItemStatus, JobAction, JobItem, JobStatus, VppUser, VppUserStatus

from .test_worker import finished, outbox, sandbox_token, start_job, worker  # noqa: F401 - fixtures and helpers

pytestmark = [pytest.mark.worker, pytest.mark.sandbox, pytest.mark.django_db(transaction=True)]

REFUSED = "refused@example.com"


def test_five_users_one_refused_four_invited_one_failed_with_apples_number(
    vpp_sandbox,
    sandbox_token,  # noqa: F811
    worker,  # noqa: F811
    user_factory,
    admin_client,
):
    w = worker()
    users = [user_factory() for _ in range(4)] + [user_factory(email=REFUSED)]
    vpp_sandbox.control(refuse_emails=[REFUSED])

    job = finished(start_job(JobAction.INVITE, users), w)

    assert (job.status, job.succeeded, job.failed) == (JobStatus.DONE, 4, 1), w.log_tail()
    item = JobItem.objects.get(job=job, user=users[-1])
    assert (item.status, item.error_number) == (ItemStatus.FAILED, 9717)
    assert "Apple rejected the user's e-mail address as invalid." in item.reason
    assert not VppUser.objects.filter(user=users[-1]).exists()
    assert VppUser.objects.filter(status=VppUserStatus.INVITED).count() == 4
    assert len([u for u in vpp_sandbox.users() if u["status"] == "Registered"]) == 4

    page = admin_client.get(reverse("jobs:detail", args=[job.pk]) + "?status=failed").content.decode()
    assert "9717" in page and "Apple rejected the user" in page
    export = admin_client.get(reverse("jobs:export", args=[job.pk]))
    rows = list(csv.DictReader(io.StringIO(b"".join(export.streaming_content).decode())))
    (failed,) = [row for row in rows if row["status"] == ItemStatus.FAILED]
    assert failed["apple_error_number"] == "9717" and "Apple rejected the user" in failed["reason"]
