"""The ``user_import`` job kind: apply a previewed CSV import of device users (users/csv_import.py).

One job-level phase: ``users.csv_import.import_apply`` commits the import chunk by chunk and
resumes after the last committed chunk, so a redelivered task or the sweeper re-running the
phase never writes a row twice (matching by login id and serial makes a repeat a no-op anyway).
Progress is the import's ``applied_rows``, mirrored on ``Job.succeeded``. docs/import.md.
"""

from __future__ import annotations

from django.utils import timezone

from users.csv_import import import_apply
from users.models import UserImport
from vpp.models import AuditEvent, Job


def user_import_phase(*, job: Job, items, client, token: str) -> None:
    """Apply import ``job.selection["import"]``; raises what ``import_apply`` raises (the engine
    then fails the job; the import says where it stopped and can be started again)."""

    def progress(done: int, total: int) -> None:
        Job.objects.filter(pk=job.pk).update(succeeded=done, heartbeat_at=timezone.now())

    import_apply(import_id=job.selection["import"], on_progress=progress)


def user_import_finished(job: Job) -> None:
    """The job's counts and audit event from the import's result (the job has no items)."""
    user_import = UserImport.objects.filter(pk=job.selection.get("import")).first()
    applied = user_import.applied_rows if user_import else 0
    rejected = len(user_import.rejected) if user_import else 0
    Job.objects.filter(pk=job.pk).update(succeeded=applied, skipped=rejected)
    result = (user_import.result if user_import else {}) or {}
    users, devices = result.get("users", {}), result.get("devices", {})
    outcome = (
        f"{job.get_status_display()}: users {users.get('created', 0)} created, {users.get('updated', 0)} updated; "
        f"devices {devices.get('created', 0)} created, {devices.get('updated', 0)} updated"
        + (f" — {job.error}" if job.error else "")
    )
    AuditEvent.objects.create(
        actor=job.started_by,
        actor_name=job.started_by.get_username() if job.started_by else "",
        action="users.import.finished",
        target_summary=f"import #{job.selection.get('import')} (job #{job.pk})",
        count=applied,
        outcome=outcome[:200],
        job=job,
    )
