"""What a job's progress bar and badge say: the work actually done, never a guess.

One reading for the job panel, the job page, the jobs list and the settings page's sync line
(docs/vpp-jobs.md#progress):

- Skipped users are no work: "done of to-do" counts succeeded + failed users out of the users
  the job acts on (``total - skipped``), so a job with one skipped user starts at 0 %.
- The full sync (job-level phases, no per-user items until it finds changes) has no known size
  while it runs: the bar is indeterminate and the text names the phase it is on.
- A finished job whose every user failed is badged "Failed", one with some failures
  "Done with failures" (``job_badge``).
"""

from __future__ import annotations

from dataclasses import dataclass

from vpp.jobs.phases import phase_label
from vpp.models import ItemStatus, Job, JobAction, JobStatus
from vpp.selectors import job_item_counts


@dataclass(frozen=True)
class JobProgress:
    """``counts``: users per ItemStatus value; ``done``/``todo``: users finished / to act on;
    ``percent``: 0-100, or None when the size is not known yet (indeterminate bar); ``text``:
    the line above the bar ("2 of 3 users", "Reading Apple's users…")."""

    counts: dict[str, int]
    done: int
    todo: int
    percent: int | None
    text: str

    @property
    def in_progress(self) -> int:
        return self.counts[ItemStatus.PENDING] + self.counts[ItemStatus.IN_FLIGHT]


def job_progress(job: Job) -> JobProgress:
    """The progress of ``job`` now (one COUNT query for a bulk job; none for a finished full sync)."""
    if job.action == JobAction.SYNC_ALL:
        return _full_sync_progress(job)
    counts = job_item_counts(job)
    done = counts[ItemStatus.SUCCEEDED] + counts[ItemStatus.FAILED]
    todo = sum(counts.values()) - counts[ItemStatus.SKIPPED]
    # Nothing to do (every user skipped): complete once the job ends, empty before.
    percent = min(100, round(100 * done / todo)) if todo else (100 if job.finished else 0)
    noun = "user" if todo == 1 else "users"
    return JobProgress(counts=counts, done=done, todo=todo, percent=percent, text=f"{done:,} of {todo:,} {noun}")


def _full_sync_progress(job: Job) -> JobProgress:
    counts = dict.fromkeys(ItemStatus.values, 0)
    counts[ItemStatus.SUCCEEDED], counts[ItemStatus.FAILED] = job.succeeded, job.failed
    done = job.succeeded + job.failed
    if job.finished:
        text = f"{done:,} change{'' if done == 1 else 's'} sent to Apple" if done else "Finished"
        return JobProgress(counts=counts, done=done, todo=done, percent=100, text=text)
    if job.status == JobStatus.QUEUED:
        return JobProgress(counts=counts, done=done, todo=0, percent=None, text="Not started yet")
    label = phase_label(job.phase)
    text = f"{label[:1].upper()}{label[1:]}…" if label else "Working…"
    return JobProgress(counts=counts, done=done, todo=0, percent=None, text=text)


def job_badge(job: Job) -> tuple[str, str]:
    """(label, tone) of the job's status badge; tone is one of ok, warn, danger, muted, info."""
    if job.status == JobStatus.DONE:
        if job.failed and not job.succeeded:
            return "Failed", "danger"
        if job.failed:
            return "Done with failures", "warn"
        return "Done", "ok"
    tone = {JobStatus.FAILED: "danger", JobStatus.CANCELLED: "muted"}.get(job.status, "info")
    return job.get_status_display(), tone
