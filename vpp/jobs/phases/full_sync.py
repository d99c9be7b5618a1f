"""Full sync of VPP users with Apple (Sync now, and the schedule).

1. **Push** what changed here: emails changed locally (users/update, batched by the client
   to maxUsers), and VPP users whose device user was deleted or deactivated here (their
   licences revoked, then retired at Apple).
2. **Read** Apple's users: the first run in full, later runs as a delta from the stored
   ``users_version_id``; pages are streamed, and each page is one SELECT ... IN and one
   executemany UPDATE, so memory stays flat whatever the size of the library.

Only one sync runs per token: ``SyncSchedule.running_job_id`` is claimed with a conditional
UPDATE in the transaction that creates the Job; a second request gets the running job.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from users.models import User
from vpp.apple.client import VppClient
from vpp.apple.errors import InvalidRequestError, VppError
from vpp.apple.types import EventStatus, RequestUser, VppApiUser
from vpp.audit import audit_record
from vpp.models import (
    FINISHED_JOB_STATUSES,
    ItemStatus,
    Job,
    JobAction,
    JobItem,
    JobStatus,
    SyncOrphan,
    SyncResult,
    SyncRun,
    SyncSchedule,
    VppServerSetting,
    VppUser,
    VppUserStatus,
)
from vpp.selectors import token_problem
from vpp.services.setting import health_from_error, setting_client

logger = logging.getLogger(__name__)

# A sync whose worker vanished without finishing frees the lock after this long.
STALE_AFTER = dt.timedelta(minutes=30)
WRITE_BATCH = 500
ACTIVE = (VppUserStatus.PENDING, VppUserStatus.INVITED, VppUserStatus.ASSOCIATED)
APPLE_TO_LOCAL = {
    "Registered": VppUserStatus.INVITED,
    "Associated": VppUserStatus.ASSOCIATED,
    "Retired": VppUserStatus.RETIRED,
    "Deleted": VppUserStatus.RETIRED,
}


class SyncBlocked(RuntimeError):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class SyncStart:
    job: Job
    started: bool  # False: a sync was already running; ``job`` is that one


def running_sync_job() -> Job | None:
    running_id = SyncSchedule.objects.filter(pk=1).values_list("running_job_id", flat=True).first()
    return Job.objects.filter(pk=running_id).first() if running_id else None


def _stale(job: Job | None, now: dt.datetime) -> bool:
    if job is None or job.finished:
        return True
    last_sign = job.heartbeat_at or job.started_at or job.created_at
    return last_sign < now - STALE_AFTER


def sync_start(*, actor=None, trigger: str = "manual", now: dt.datetime | None = None) -> SyncStart:
    """Create the sync Job and enqueue it, or return the one already running."""
    now = now or timezone.now()
    problem = token_problem(VppServerSetting.load())
    if problem:
        raise SyncBlocked(problem)
    SyncSchedule.load()
    with transaction.atomic():
        running = running_sync_job()
        if running is not None and not _stale(running, now):
            return SyncStart(running, started=False)
        job = Job.objects.create(
            action=JobAction.SYNC_ALL,
            started_by=actor,
            status=JobStatus.QUEUED,
            selection={"scope": "all", "trigger": trigger},
        )
        seen = running.pk if running else None
        won = SyncSchedule.objects.filter(pk=1, running_job_id=seen).update(
            running_job_id=job.pk,
            last_job_id=job.pk,
            last_run_at=now,
            last_result=SyncResult.RUNNING,
            last_counts={},
            last_detail="",
            last_finished_at=None,
        )
        if won:
            if running is not None and not running.finished:
                # Its worker vanished (no heartbeat for STALE_AFTER): close it so lists stay honest.
                Job.objects.filter(pk=running.pk).exclude(status__in=FINISHED_JOB_STATUSES).update(
                    status=JobStatus.FAILED, finished_at=now, error="The worker stopped answering; superseded."
                )
            SyncRun.objects.create(job=job, trigger=trigger)
            audit_record(actor=actor, action="vpp.sync_started", details={"trigger": trigger}, job=job)
            transaction.on_commit(lambda: _enqueue(job.pk))
        else:  # somebody else claimed it between our read and our UPDATE: drop our job
            transaction.set_rollback(True)
    if won:
        return SyncStart(job, started=True)
    last_id = SyncSchedule.objects.values_list("last_job_id", flat=True).get(pk=1)
    return SyncStart(running_sync_job() or Job.objects.get(pk=last_id), started=False)


def _enqueue(job_id: int) -> None:
    from vpp.tasks import sync_run_task

    try:
        sync_run_task.delay(job_id)
    except Exception as exc:  # the broker is down: say so now rather than hold the lock for 30 min
        logger.exception("could not enqueue VPP sync job %s", job_id)
        job = Job.objects.get(pk=job_id)
        Job.objects.filter(pk=job_id).update(enqueue_error=str(exc)[:300])
        _finish(
            job,
            SyncRun.objects.get(job=job),
            Counter(),
            SyncResult.FAILED,
            "The task queue could not be reached; try again when the worker and broker are up.",
        )


# --- the run ------------------------------------------------------------------------


def sync_run(*, job_id: int) -> Job:
    """Run a claimed sync Job to the end. Safe to call twice (a finished job is left alone)."""
    now = timezone.now()
    claimed = Job.objects.filter(pk=job_id, status=JobStatus.QUEUED).update(
        status=JobStatus.RUNNING, started_at=now, heartbeat_at=now, phase="push"
    )
    job = Job.objects.get(pk=job_id)
    if not claimed and job.status != JobStatus.RUNNING:
        return job
    run = SyncRun.objects.get(job=job)
    counts: Counter = Counter(run.counts)
    setting = VppServerSetting.load()
    try:
        client = setting_client(setting)
        _push_emails(client, job, counts)
        _retire_departed(client, job, counts)
        _read_apple_users(client, job, run, setting, counts)
    except VppError as exc:
        _record_token_state(exc)
        return _finish(job, run, counts, SyncResult.FAILED, exc.message)
    return _finish(job, run, counts, SyncResult.PARTIAL if counts["failed"] else SyncResult.SUCCEEDED, "")


def _record_token_state(exc: VppError) -> None:
    check = health_from_error(exc)
    if check:
        VppServerSetting.objects.filter(pk=1).update(
            token_health=check.health, token_health_detail=check.detail, token_health_checked_at=timezone.now()
        )


def _beat(job: Job, phase: str, counts: Counter) -> None:
    now = timezone.now()
    Job.objects.filter(pk=job.pk).update(
        phase=phase, heartbeat_at=now, total=counts["items"], succeeded=counts["succeeded"], failed=counts["failed"]
    )
    SyncSchedule.objects.filter(pk=1, running_job_id=job.pk).update(last_counts=dict(counts))


def _finish(job: Job, run: SyncRun, counts: Counter, result: str, detail: str) -> Job:
    now = timezone.now()
    status = JobStatus.FAILED if result == SyncResult.FAILED else JobStatus.DONE
    run.counts = dict(counts)
    run.save(update_fields=["counts"])
    Job.objects.filter(pk=job.pk).update(
        status=status,
        phase="done",
        finished_at=now,
        heartbeat_at=now,
        error=detail[:500],
        succeeded=counts["succeeded"],
        failed=counts["failed"],
        total=counts["items"],
    )
    SyncSchedule.objects.filter(pk=1, last_job_id=job.pk).update(
        last_result=result, last_counts=dict(counts), last_detail=detail[:500], last_finished_at=now
    )
    SyncSchedule.objects.filter(pk=1, running_job_id=job.pk).update(running_job_id=None)
    job.refresh_from_db()
    audit_record(
        actor=None,
        action="vpp.sync_finished",
        details={"result": result, **dict(counts)},
        outcome=result,
        count=counts["apple_users"],
        job=job,
    )
    logger.info("VPP sync job %s finished: %s %s", job.pk, result, dict(counts))
    return job


def _label(vpp_user: VppUser) -> str:
    user = vpp_user.user
    return (f"{user.display_name} ({user.login_id})" if user else f"deleted user {vpp_user.client_user_id}")[:300]


def _wait_all(client: VppClient, event_ids: list[str]) -> list[EventStatus]:
    return [client.wait_for_event(event_id) for event_id in event_ids]


def _failed_ids(statuses: list[EventStatus]) -> dict[str, str]:
    failed = {}
    for status in statuses:
        for failure in status.failures:
            for cid in failure.client_user_ids:
                failed[str(cid)] = f"{failure.message} (error {failure.error_number})"
        if status.status == "FAILED" and not status.failures:
            failed["*"] = f"Apple reports event {status.event_id} failed"
    return failed


def _items(job: Job, rows: list[VppUser], step: str, failed: dict[str, str]) -> None:
    items = []
    for row in rows:
        reason = failed.get(str(row.client_user_id)) or failed.get("*", "")
        items.append(
            JobItem(
                job=job,
                user=row.user,
                vpp_user=row,
                user_label=_label(row),
                step=step,
                status=ItemStatus.FAILED if reason else ItemStatus.SUCCEEDED,
                reason=reason[:500],
            )
        )
    JobItem.objects.bulk_create(items, batch_size=WRITE_BATCH, ignore_conflicts=True)


def _push_emails(client: VppClient, job: Job, counts: Counter) -> None:
    """Emails changed here since Apple last heard of them → users/update."""
    from django.db.models import F

    changed = (
        VppUser.objects.filter(status__in=ACTIVE, user__isnull=False, user__is_active=True)
        .exclude(user__email="")
        .exclude(user__email=F("apple_email"))
        .select_related("user")
    )
    for chunk in _chunks(changed.iterator(chunk_size=WRITE_BATCH), WRITE_BATCH):
        requests = [RequestUser(client_user_id=str(row.client_user_id), email=row.user.email) for row in chunk]
        failed = _failed_ids(_wait_all(client, client.update_users(requests)))
        ok = [row for row in chunk if str(row.client_user_id) not in failed and "*" not in failed]
        for row in ok:
            row.apple_email = row.user.email
        VppUser.objects.bulk_update(ok, ["apple_email"], batch_size=WRITE_BATCH)
        _items(job, chunk, "update_email", failed)
        counts["emails_pushed"] += len(ok)
        _count_items(counts, len(chunk), len(chunk) - len(ok))
        _beat(job, "push", counts)


def _retire_departed(client: VppClient, job: Job, counts: Counter) -> None:
    """Device user deleted or deactivated here → revoke licences, then retire at Apple."""
    departed = (
        VppUser.objects.filter(status__in=ACTIVE)
        .filter(Q(user__isnull=True) | Q(user__is_active=False))
        .select_related("user")
    )
    for chunk in _chunks(departed.iterator(chunk_size=WRITE_BATCH), WRITE_BATCH):
        ids = [str(row.client_user_id) for row in chunk]
        revoke_failed = _failed_ids(_wait_all(client, client.revoke_assets(client_user_ids=ids)))
        retire_ids = [cid for cid in ids if cid not in revoke_failed and "*" not in revoke_failed]
        retire_failed = _failed_ids(_wait_all(client, client.retire_users(retire_ids))) if retire_ids else {}
        failed = {**revoke_failed, **retire_failed}
        ok = [row for row in chunk if str(row.client_user_id) not in failed and "*" not in failed]
        for row in ok:
            row.status, row.invite_code = VppUserStatus.RETIRED, ""
        VppUser.objects.bulk_update(ok, ["status", "invite_code"], batch_size=WRITE_BATCH)
        _items(job, chunk, "retire", failed)
        counts["retired_at_apple"] += len(ok)
        _count_items(counts, len(chunk), len(chunk) - len(ok))
        _beat(job, "push", counts)


def _count_items(counts: Counter, total: int, failed: int) -> None:
    counts["items"] += total
    counts["failed"] += failed
    counts["succeeded"] += total - failed


def _chunks(iterable, size: int):
    chunk = []
    for row in iterable:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _read_apple_users(client, job, run, setting, counts) -> None:
    since = setting.users_version_id or None
    try:
        version = _read_pages(client, job, run, since, counts)
    except InvalidRequestError as exc:
        if since is None or exc.error_number != 9721:
            raise
        logger.warning("stored users versionId no longer valid (9721); running a full read instead")
        since = None
        version = _read_pages(client, job, run, None, counts)
    run.full, run.since_version_id, run.version_id = since is None, since or "", version or ""
    run.save(update_fields=["full", "since_version_id", "version_id"])
    if version:
        VppServerSetting.objects.filter(pk=1).update(users_version_id=version)


def _read_pages(client, job, run, since, counts) -> str | None:
    listing = client.iter_users(since_version_id=since)
    seen_active: set[str] = set()  # retired history rows must not override a re-created active user
    for page in listing.pages():
        _apply_page(job, run, page.users, seen_active, counts)
        _beat(job, "read", counts)
    return listing.version_id


@dataclass
class _Local:
    """The columns of a VppUser the read phase compares (plain values: no model instances)."""

    pk: int
    user_id: int | None
    status: str
    invite_code: str
    id_hash: str
    apple_email: str


_LOCAL_FIELDS = ("pk", "user_id", "status", "invite_code", "id_hash", "apple_email")


def _apply_page(job, run, apple_users: list[VppApiUser], seen_active: set[str], counts: Counter) -> None:
    by_id = {}
    for au in apple_users:
        if au.status in ("Registered", "Associated"):
            seen_active.add(au.client_user_id)
            by_id[au.client_user_id] = au
        elif au.client_user_id not in seen_active and au.client_user_id not in by_id:
            by_id[au.client_user_id] = au
    counts["apple_users"] += len(apple_users)
    rows = VppUser.objects.filter(client_user_id__in=_uuids(by_id)).values_list("client_user_id", *_LOCAL_FIELDS)
    local = {str(values[0]): _Local(*values[1:]) for values in rows}
    changed, moved, orphans = [], [], []
    for cid, au in by_id.items():
        row = local.get(cid)
        if row is None:
            if au.status in ("Registered", "Associated"):
                orphans.append(
                    SyncOrphan(
                        run=run,
                        client_user_id=cid[:100],
                        apple_status=au.status,
                        email=(au.email or "")[:254],
                        id_hash=(au.id_hash or "")[:200],
                    )
                )
            continue
        before = row.status
        if _merge(row, au):
            changed.append(row)
            if row.status != before:
                moved.append((row, before))
    _write_rows(changed)
    _status_items(job, moved)
    _count_items(counts, len(moved), 0)
    SyncOrphan.objects.bulk_create(orphans, batch_size=WRITE_BATCH, ignore_conflicts=True)
    counts["updated"] += len(changed)
    counts["status_changed"] += len(moved)
    counts["orphans"] += len(orphans)
    counts["retired_by_apple"] += sum(1 for row, _ in moved if row.status == VppUserStatus.RETIRED)


def _status_items(job: Job, moved: list[tuple[_Local, str]]) -> None:
    """A per-user result for every status Apple changed (not for refreshed codes or hashes)."""
    if not moved:
        return
    users = {u.pk: u for u in User.objects.filter(pk__in=[row.user_id for row, _ in moved if row.user_id])}
    items = []
    for row, before in moved:
        user = users.get(row.user_id)
        label = f"{user.display_name} ({user.login_id})" if user else f"VPP user #{row.pk} (device user deleted)"
        items.append(
            JobItem(
                job=job,
                user=user,
                vpp_user_id=row.pk,
                user_label=label[:300],
                step="read",
                status=ItemStatus.SUCCEEDED,
                reason=f"Was {before} here; Apple says {row.status}.",
            )
        )
    JobItem.objects.bulk_create(items, batch_size=WRITE_BATCH, ignore_conflicts=True)


def _write_rows(rows: list[_Local]) -> None:
    """UPDATE ... WHERE id = %s with executemany, in one transaction.

    Django's bulk_update builds one CASE WHEN per row and field, which costs milliseconds
    per row in Python; a prepared UPDATE run many times (psycopg 3 pipelines it) does not.
    """
    if not rows:
        return
    quote = connection.ops.quote_name
    columns = ("status", "invite_code", "id_hash", "apple_email", "last_synced_at", "updated_at")
    assignments = ", ".join(f"{quote(column)} = %s" for column in columns)
    sql = f"UPDATE {quote(VppUser._meta.db_table)} SET {assignments} WHERE {quote('id')} = %s"  # noqa: S608
    now = VppUser._meta.get_field("updated_at").get_db_prep_save(timezone.now(), connection)
    params = [(row.status, row.invite_code, row.id_hash, row.apple_email, now, now, row.pk) for row in rows]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(sql, params)


def _uuids(ids) -> list:
    import uuid

    out = []
    for cid in ids:
        try:
            out.append(uuid.UUID(cid))
        except ValueError:
            continue
    return out


def _merge(row: _Local, au: VppApiUser) -> bool:
    """Copy Apple's view onto the row; True if anything changed."""
    new_status = APPLE_TO_LOCAL.get(au.status, row.status)
    if new_status == VppUserStatus.RETIRED and row.status == VppUserStatus.PENDING:
        # A retired history row while our create is still in flight says nothing about it.
        return False
    before = (row.status, row.invite_code, row.id_hash, row.apple_email)
    row.status = new_status
    if new_status == VppUserStatus.RETIRED:
        row.invite_code = ""  # a retired user's invitation no longer works
    elif au.invite_code is not None:
        row.invite_code = au.invite_code[:100]
    if au.id_hash:
        row.id_hash = au.id_hash[:200]
    if au.email:
        row.apple_email = au.email[:254]
    return before != (row.status, row.invite_code, row.id_hash, row.apple_email)
