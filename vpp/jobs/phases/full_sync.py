"""Full sync of VPP users with Apple: three job-level phases on the one job engine.

1. ``push``: emails changed here since Apple last saw them → users/update (batched by the
   client to Apple's maxUsers).
2. ``retire``: VPP users whose device user was deleted or deactivated here → licences
   revoked, then retired at Apple.
3. ``read_all``: Apple's users, the first run in full, later runs as a delta from the stored
   ``users_version_id``; pages are streamed, and each page is one SELECT ... IN and one
   executemany UPDATE. Active records are applied as their page arrives; retired history is
   held (one small record per clientUserId) and applied after the last page to users no page
   showed active, so an active record always wins whatever the page order.

A step that fails for some users never stops the sync: they get a failed result with Apple's
number and a plain reason, and the sync goes on (token errors still stop it).

Each phase is safe to run again from its start (a worker that died mid-phase is replaced by
the sweeper): changed emails and departed users are found anew, Apple's calls are repeatable,
and per-user results are one row per job and user (a later change to the same user is added
to its row's text). Counters live on the ``SyncRun``; a
phase resets its own counters when it starts. The job is started by vpp/services/sync.py.
Apple's users listing and its versionId: https://developer.apple.com/documentation/devicemanagement/get-users-4mwln
(the project's notes: docs/apple-vpp.md#versionid).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from users.models import User
from vpp.apple.client import VppClient
from vpp.apple.errors import InvalidRequestError
from vpp.apple.types import RequestUser, VppApiUser
from vpp.audit import audit_record
from vpp.jobs.apple_io import (
    UNKNOWN_EVENT,
    USER_NOT_FOUND,
    failures_by_user,
    retired_at_apple,
    send_without_refused,
)
from vpp.jobs.phases.delete import ALREADY_RETIRED, NOT_AT_APPLE
from vpp.jobs.phases.orphans import flag_blocked_invitations
from vpp.jobs.rows import rows_update
from vpp.models import (
    ACTIVE_VPP_STATUSES,
    ItemStatus,
    Job,
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
from vpp.selectors import job_item_counts

logger = logging.getLogger(__name__)

WRITE_BATCH = 500
AT_APPLE = (VppUserStatus.INVITED, VppUserStatus.ASSOCIATED)  # active at Apple (pending: not known yet)
RETIRED_DONE = "Departed here: licences revoked and retired at Apple."
NEXT_SYNC = "The next full sync tries again (fix the cause first, or it fails the same way)."
SYNC_VERSION_UNKNOWN = 9721  # Apple no longer knows the stored sinceVersionId: read in full
# The counters each phase owns (reset when the phase starts again after a worker died).
PHASE_COUNTERS = {
    "push": ("emails_pushed",),
    "retire": ("retired_at_apple",),
    "read_all": (
        "apple_users",
        "updated",
        "status_changed",
        "orphans",
        "retired_by_apple",
        "absent_at_apple",
        "blocked_invitations",
    ),
}


def _start(job: Job, phase: str) -> tuple[SyncRun, Counter]:
    """The run and its counters as this phase starts: its own counters at 0, items as recorded."""
    run = SyncRun.objects.get(job=job)
    counts = Counter(run.counts)
    for key in PHASE_COUNTERS[phase]:
        counts[key] = 0
    items = job_item_counts(job)
    counts["succeeded"], counts["failed"] = items[ItemStatus.SUCCEEDED], items[ItemStatus.FAILED]
    counts["items"] = counts["succeeded"] + counts["failed"]
    return run, counts


def _beat(job: Job, run: SyncRun, counts: Counter) -> None:
    """Progress: the run's counters, the job's totals and heartbeat, the setting page's summary."""
    SyncRun.objects.filter(pk=run.pk).update(counts=dict(counts))
    Job.objects.filter(pk=job.pk).update(
        total=counts["items"], succeeded=counts["succeeded"], failed=counts["failed"], heartbeat_at=timezone.now()
    )
    SyncSchedule.objects.filter(pk=1, running_job_id=job.pk).update(last_counts=dict(counts))


def full_sync_push_phase(*, job: Job, items: list[JobItem], client: VppClient, token: str) -> None:
    """Phase ``push``: changed emails → users/update. ``items`` is empty (a job-level phase)."""
    run, counts = _start(job, "push")
    _push_emails(client, job, run, counts)
    _beat(job, run, counts)


def full_sync_retire_phase(*, job: Job, items: list[JobItem], client: VppClient, token: str) -> None:
    """Phase ``retire``: departed device users → licences revoked, then retired at Apple."""
    run, counts = _start(job, "retire")
    _retire_departed(client, job, run, counts)
    _beat(job, run, counts)


def full_sync_read_phase(*, job: Job, items: list[JobItem], client: VppClient, token: str) -> None:
    """Phase ``read_all``: Apple's users (in full, or as a delta) onto the VppUsers here."""
    run, counts = _start(job, "read_all")
    SyncOrphan.objects.filter(run=run).delete()  # a restarted read lists them again
    _read_apple_users(client, job, run, VppServerSetting.load(), counts)
    counts["blocked_invitations"] = flag_blocked_invitations(run)
    _beat(job, run, counts)


def full_sync_finished(job: Job) -> None:
    """The engine finished the job (done or failed): record the result for the setting page, free
    the one-per-token claim, and write the audit event."""
    run = SyncRun.objects.get(job=job)
    counts = Counter(run.counts)
    counts["succeeded"], counts["failed"] = job.succeeded, job.failed
    counts["items"] = job.succeeded + job.failed
    if job.status != JobStatus.DONE:
        result = SyncResult.FAILED
    else:
        result = SyncResult.PARTIAL if job.failed else SyncResult.SUCCEEDED
    SyncRun.objects.filter(pk=run.pk).update(counts=dict(counts))
    Job.objects.filter(pk=job.pk).update(total=counts["items"])
    now = timezone.now()
    SyncSchedule.objects.filter(pk=1, last_job_id=job.pk).update(
        last_result=result, last_counts=dict(counts), last_detail=job.error[:500], last_finished_at=now
    )
    SyncSchedule.objects.filter(pk=1, running_job_id=job.pk).update(running_job_id=None)
    job.total = counts["items"]
    audit_record(
        actor=job.started_by,  # the admin who clicked Sync now; None (system) for the schedule
        action="vpp.sync_finished",
        details={"result": result, **dict(counts)},
        outcome=result,
        count=counts["apple_users"],
        job=job,
    )
    logger.info("VPP sync job %s finished: %s %s", job.pk, result, dict(counts))


def _label(vpp_user: VppUser) -> str:
    user = vpp_user.user
    return (f"{user.display_name} ({user.login_id})" if user else f"deleted user {vpp_user.client_user_id}")[:300]


Failure = tuple[int | None, str]  # (Apple's error number, a plain reason)


def _send_and_wait(client: VppClient, call, cuids: list[str]) -> dict[str, Failure]:
    """Send ``cuids`` with ``call`` and wait for Apple's events: the users that failed, with why.

    A step that fails for some users never stops the sync: users Apple named in a synchronous
    error are failed alone and the rest sent again (apple_io.send_without_refused); an error
    naming nobody fails this batch's users. Token errors still stop the job (every call would fail).
    """
    failed: dict[str, Failure] = {}
    try:
        event_ids, sent = send_without_refused(call, cuids, failed.update, next_step=NEXT_SYNC)
    except InvalidRequestError as exc:
        reason = f"{exc.message} {NEXT_SYNC}"
        failed.update({cuid: (exc.error_number, reason) for cuid in cuids if cuid not in failed})
        return failed
    for event_id in event_ids:
        try:
            status = client.wait_for_event(event_id)
        except InvalidRequestError as exc:
            if exc.error_number != UNKNOWN_EVENT:
                raise
            # Apple forgot the event: its outcome is unknown, so nothing is recorded as done and
            # the next sync does it again (a repeat is harmless: an update or retire of the same users).
            reason = f"{exc.message} {NEXT_SYNC}"
            failed.update({cuid: (exc.error_number, reason) for cuid in sent if cuid not in failed})
            continue
        per_user, general = failures_by_user(status, next_step=NEXT_SYNC)
        for cuid in sent:
            failure = per_user.get(cuid.lower()) or general
            if failure is not None:
                failed.setdefault(cuid, failure)
    return failed


def _items(job: Job, rows: list[VppUser], step: str, failed: dict[str, Failure], done: str) -> None:
    items = []
    for row in rows:
        number, reason = failed.get(str(row.client_user_id), (None, ""))
        items.append(
            JobItem(
                job=job,
                user=row.user,
                vpp_user=row,
                user_label=_label(row),
                step=step,
                status=ItemStatus.FAILED if reason else ItemStatus.SUCCEEDED,
                reason=(reason or done)[:500],
                error_number=number if reason else None,
            )
        )
    JobItem.objects.bulk_create(items, batch_size=WRITE_BATCH, ignore_conflicts=True)


def _push_emails(client: VppClient, job: Job, run: SyncRun, counts: Counter) -> None:
    """Emails changed here since Apple last heard of them → users/update."""
    # Pending users are not at Apple yet (or never will be: their create failed): an update
    # would fail with 9609 on every sync. Their create sends the current address.
    changed = (
        VppUser.objects.filter(status__in=AT_APPLE, user__isnull=False, user__is_active=True)
        .exclude(user__email="")
        .exclude(user__email=F("apple_email"))
        .select_related("user")
    )
    for chunk in _chunks(changed.iterator(chunk_size=WRITE_BATCH), WRITE_BATCH):
        wanted = {str(row.client_user_id): RequestUser(str(row.client_user_id), email=row.user.email) for row in chunk}
        failed = _send_and_wait(
            client, lambda cuids, wanted=wanted: client.update_users([wanted[c] for c in cuids]), list(wanted)
        )
        ok = [row for row in chunk if str(row.client_user_id) not in failed]
        for row in ok:
            row.apple_email = row.user.email
        VppUser.objects.bulk_update(ok, ["apple_email"], batch_size=WRITE_BATCH)
        _items(job, chunk, "update_email", failed, "New email sent to Apple.")
        counts["emails_pushed"] += len(ok)
        _count_items(counts, len(chunk), len(chunk) - len(ok))
        _beat(job, run, counts)


def _retire_departed(client: VppClient, job: Job, run: SyncRun, counts: Counter) -> None:
    """Device user deleted or deactivated here → revoke licences, then retire at Apple."""
    departed = (
        VppUser.objects.filter(status__in=ACTIVE_VPP_STATUSES, unit_uid="")  # not the history of an earlier unit
        .filter(Q(user__isnull=True) | Q(user__is_active=False))
        .select_related("user")
    )
    for chunk in _chunks(departed.iterator(chunk_size=WRITE_BATCH), WRITE_BATCH):
        ids = [str(row.client_user_id) for row in chunk]
        failed = _send_and_wait(client, lambda cuids: client.revoke_assets(client_user_ids=cuids), ids)
        retire_ids = [cid for cid in ids if cid not in failed or failed[cid][0] == USER_NOT_FOUND]
        failed.update(_send_and_wait(client, client.retire_users, retire_ids) if retire_ids else {})
        # 9609: Apple holds no active record (never created, or retired by a run whose answer
        # was lost): the user is retired here too, and the result says which (docs/apple-vpp.md#errors).
        gone = {cid for cid, (number, _) in failed.items() if number == USER_NOT_FOUND}
        already = retired_at_apple(client, gone) if gone else set()
        failed = {cid: failure for cid, failure in failed.items() if cid not in gone}
        ok = [row for row in chunk if str(row.client_user_id) not in failed]
        for row in ok:
            row.status, row.invite_code = VppUserStatus.RETIRED, ""
        VppUser.objects.bulk_update(ok, ["status", "invite_code"], batch_size=WRITE_BATCH)
        _items(job, [row for row in chunk if str(row.client_user_id) not in gone], "retire", failed, RETIRED_DONE)
        for cids, text in ((gone & already, ALREADY_RETIRED), (gone - already, NOT_AT_APPLE)):
            _items(job, [row for row in chunk if str(row.client_user_id) in cids], "retire", {}, text)
        counts["retired_at_apple"] += len(ok)
        _count_items(counts, len(chunk), len(chunk) - len(ok))
        _beat(job, run, counts)


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
    read_started = timezone.now()
    seen_active: set[str] = set()
    try:
        version = _read_pages(client, job, run, since, counts, seen_active)
    except InvalidRequestError as exc:
        if since is None or exc.error_number != SYNC_VERSION_UNKNOWN:
            raise
        logger.warning("stored users versionId no longer valid (9721); running a full read instead")
        since = None
        seen_active.clear()
        version = _read_pages(client, job, run, None, counts, seen_active)
    if since is None:
        reconcile_absent(job, seen_active, counts, read_started=read_started)
    run.full, run.since_version_id, run.version_id = since is None, since or "", version or ""
    run.save(update_fields=["full", "since_version_id", "version_id"])
    if version:
        VppServerSetting.objects.filter(pk=1).update(users_version_id=version)


def _read_pages(client, job, run, since, counts, seen_active: set[str]) -> str | None:
    """Apply Apple's listing page by page; returns its versionId. ``seen_active`` collects the
    clientUserIds (lower case) Apple listed as Registered or Associated.

    Apple keeps retired history records beside a clientUserId's active one, in any page order
    (docs/apple-vpp.md#users). Active records are applied as their page arrives; the others are
    held until the listing has ended and applied only to users no page showed active, so an
    active record always wins, nobody shows as retired between pages, and a listing that stops
    midway retires nobody. (Held: one small record per retired clientUserId.)
    """
    listing = client.iter_users(since_version_id=since)
    held: dict[str, VppApiUser] = {}
    for page in listing.pages():
        counts["apple_users"] += len(page.users)
        active = []
        for au in page.users:
            key = au.client_user_id.lower()
            if au.active:
                seen_active.add(key)
                active.append(au)
            else:
                held[key] = au
        _apply_page(job, run, active, counts)
        _beat(job, run, counts)
    history = [au for key, au in held.items() if key not in seen_active]
    for chunk in _chunks(iter(history), WRITE_BATCH):
        _apply_page(job, run, chunk, counts)
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


def _apply_page(job, run, apple_users: list[VppApiUser], counts: Counter) -> None:
    """Apple's records (one per clientUserId: the caller picked the active one) onto the VppUsers here.

    clientUserIds are matched without regard to case; ones that are not UUIDs (users another
    MDM created) have no VppUser here and are orphans when active.
    """
    by_id: dict[str, VppApiUser] = {}
    for au in apple_users:
        by_id[au.client_user_id.lower()] = au
    rows = VppUser.objects.filter(client_user_id__in=_uuids(by_id)).values_list("client_user_id", *_LOCAL_FIELDS)
    local = {str(values[0]).lower(): _Local(*values[1:]) for values in rows}
    changed, moved, orphans = [], [], []
    for cid, au in by_id.items():
        row = local.get(cid)
        if row is None:
            if au.active:
                orphans.append(
                    SyncOrphan(
                        run=run,
                        client_user_id=au.client_user_id[:100],
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
    _count_items(counts, _status_items(job, moved), 0)
    SyncOrphan.objects.bulk_create(orphans, batch_size=WRITE_BATCH, ignore_conflicts=True)
    counts["updated"] += len(changed)
    counts["status_changed"] += len(moved)
    counts["orphans"] += len(orphans)
    counts["retired_by_apple"] += sum(1 for row, _ in moved if row.status == VppUserStatus.RETIRED)


def _status_items(job: Job, moved: list[tuple[_Local, str]]) -> int:
    """A per-user result for every status Apple changed (not for refreshed codes or hashes)."""
    return _add_results(
        job, [(row.user_id, row.pk, f"Was {before} here; Apple says {row.status}.") for row, before in moved]
    )


def _add_results(job: Job, results: list[tuple[int | None, int, str]]) -> int:
    """Per-user results of the read step: (device user id or None, VppUser pk, text).

    One result row per job and user (a unique constraint): a user the push or retire step (or an
    earlier page) already has a row for gets the text added to that row, so every change the
    sync made to a user is in its results. Returns how many rows were created.
    """
    if not results:
        return 0
    user_ids = [user_id for user_id, _, _ in results if user_id]
    users = {u.pk: u for u in User.objects.filter(pk__in=user_ids)}
    existing = {
        item.user_id: item
        for item in JobItem.objects.filter(job=job, user_id__in=list(users)).only("pk", "user_id", "reason")
    }
    items, extended = [], []
    for user_id, vpp_user_pk, text in results:
        user = users.get(user_id)
        if user is not None and user.pk in existing:
            item = existing[user.pk]
            if text not in item.reason:
                item.reason = f"{item.reason} {text}".strip()[:500]
                extended.append(item)
            continue
        label = f"{user.display_name} ({user.login_id})" if user else f"VPP user #{vpp_user_pk} (device user deleted)"
        items.append(
            JobItem(
                job=job,
                user=user,
                vpp_user_id=vpp_user_pk,
                user_label=label[:300],
                step="read",
                status=ItemStatus.SUCCEEDED,
                reason=text[:500],
            )
        )
    rows_update(extended, ["reason"])
    JobItem.objects.bulk_create(items, batch_size=WRITE_BATCH, ignore_conflicts=True)
    return len(items)


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
    new_status = VppUserStatus.from_apple(au.status, row.status)
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


ABSENT_REASON = (
    "Was {status} here; absent from Apple's complete listing of the organizational unit, so no longer a VPP user."
)


def reconcile_absent(job: Job, seen_active: set[str], counts: Counter, *, read_started) -> int:
    """After a complete (not delta) listing: local active VPP users Apple did not list are marked
    retired, with the reason on the row and a per-user result (not left "associated").

    Only users of the current organizational unit (``unit_uid`` ""), not pending (a create may
    be in flight) and unchanged since the listing started (``read_started``, UTC) count: a user
    invited while the listing ran may be missing from it. ``seen_active``: the clientUserIds
    (lower-case strings) Apple listed as Registered or Associated. Returns how many were marked.
    Apple's listing: https://developer.apple.com/documentation/devicemanagement/get-users-4mwln
    """
    candidates = VppUser.objects.filter(
        unit_uid="", status__in=(VppUserStatus.INVITED, VppUserStatus.ASSOCIATED), updated_at__lt=read_started
    ).select_related("user")
    seen = {cid.lower() for cid in seen_active}
    marked = 0
    for chunk in _chunks(candidates.iterator(chunk_size=WRITE_BATCH), WRITE_BATCH):
        absent = [row for row in chunk if str(row.client_user_id).lower() not in seen]
        results = []
        for row in absent:
            reason = ABSENT_REASON.format(status=row.get_status_display().lower())
            results.append((row.user_id, row.pk, reason))
            row.status, row.invite_code, row.last_error_message = VppUserStatus.RETIRED, "", reason[:500]
        VppUser.objects.bulk_update(absent, ["status", "invite_code", "last_error_message"], batch_size=WRITE_BATCH)
        _count_items(counts, _add_results(job, results), 0)
        counts["absent_at_apple"] += len(absent)
        marked += len(absent)
    return marked
