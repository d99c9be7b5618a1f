"""Issue 12: progress describes the work actually done; badges say how a job ended."""

from __future__ import annotations

import pytest

from tests.support.users import make_user
from vpp.jobs.progress import job_badge, job_progress
from vpp.models import ItemStatus, Job, JobAction, JobItem, JobStatus

pytestmark = pytest.mark.django_db


def job_with(*statuses, action=JobAction.INVITE, status=JobStatus.QUEUED) -> Job:
    job = Job.objects.create(action=action, status=status, total=len(statuses))
    for n, item_status in enumerate(statuses):
        JobItem.objects.create(job=job, user=make_user(f"P{n}"), user_label=f"P{n}", status=item_status)
    job.skipped = statuses.count(ItemStatus.SKIPPED)
    return job


def test_a_skipped_user_is_no_work_done():
    job = job_with(ItemStatus.SKIPPED, ItemStatus.PENDING, ItemStatus.PENDING, ItemStatus.PENDING)
    progress = job_progress(job)
    assert (progress.text, progress.percent, progress.in_progress) == ("0 of 3 users", 0, 3)


def test_it_counts_succeeded_and_failed_users_out_of_those_acted_on():
    job = job_with(ItemStatus.SKIPPED, ItemStatus.SUCCEEDED, ItemStatus.FAILED, ItemStatus.IN_FLIGHT)
    assert (job_progress(job).text, job_progress(job).percent) == ("2 of 3 users", 67)


def test_a_job_where_everyone_was_skipped_is_complete_when_it_ends():
    job = job_with(ItemStatus.SKIPPED, status=JobStatus.DONE)
    assert (job_progress(job).text, job_progress(job).percent) == ("0 of 0 users", 100)


def test_a_full_sync_has_no_size_while_it_runs_and_names_its_phase():
    job = Job.objects.create(action=JobAction.SYNC_ALL, status=JobStatus.QUEUED)
    assert (job_progress(job).percent, job_progress(job).text) == (None, "Not started yet")
    job.status, job.phase = JobStatus.RUNNING, "read_all"
    progress = job_progress(job)
    assert progress.percent is None and progress.text.endswith("…") and "0 of 0" not in progress.text
    job.status, job.succeeded = JobStatus.DONE, 2
    assert (job_progress(job).percent, job_progress(job).text) == (100, "2 changes sent to Apple")


@pytest.mark.parametrize(
    ("succeeded", "failed", "expected"),
    [(3, 0, ("Done", "ok")), (0, 3, ("Failed", "danger")), (2, 1, ("Done with failures", "warn"))],
)
def test_a_finished_jobs_badge_says_how_it_ended(succeeded, failed, expected):
    job = Job(action=JobAction.INVITE, status=JobStatus.DONE, succeeded=succeeded, failed=failed)
    assert job_badge(job) == expected


def test_the_panel_of_a_queued_job_with_a_skipped_user_reads_zero(admin_client):
    job = job_with(ItemStatus.SKIPPED, ItemStatus.PENDING, ItemStatus.PENDING, ItemStatus.PENDING)
    html = admin_client.get(f"/vpp/jobs/{job.pk}/panel/").content.decode()
    assert "0 of 3 users" in html and "<span data-progress-percent>0%</span>" in html
    assert "25%" not in html
