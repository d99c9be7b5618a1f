"""Start a CSV import of device users as a job (the runner users/csv_import.py calls; docs/import.md)."""

from __future__ import annotations

from django.db import transaction

from users.models import UserImport
from vpp.jobs.engine import job_enqueue
from vpp.models import AuditEvent, Job, JobAction


def user_import_job_start(*, import_id: int, actor=None) -> int:
    """Create the ``user_import`` job for import ``import_id`` and enqueue it after commit.

    Registered with ``users.csv_import.register_import_runner`` (VppConfig.ready). Writes the
    audit event "Import users from CSV <file>: n rows". Returns the job's id.
    """
    user_import = UserImport.objects.defer("rejected", "preview").get(pk=import_id)
    with transaction.atomic():
        job = Job.objects.create(
            action=JobAction.USER_IMPORT,
            started_by=actor if getattr(actor, "pk", None) else None,
            selection={"import": import_id},
            total=user_import.accepted_rows,
        )
        AuditEvent.objects.create(
            actor=job.started_by,
            actor_name=getattr(actor, "username", ""),
            action="users.import",
            target_summary=f"Import users from CSV {user_import.filename or f'#{import_id}'}"[:500],
            count=user_import.accepted_rows,
            outcome=f"Job #{job.pk} queued: {user_import.accepted_rows:,} rows to apply.",
            job=job,
        )
        transaction.on_commit(lambda: job_enqueue(job_id=job.pk))
    return job.pk
