"""The one job engine: every background job kind (invite, delete, sync of a selection, the
scheduled full sync, and the kinds to come) is created, enqueued, dispatched, chunked,
advanced, finished and swept here.

Lifecycle (docs/vpp-jobs.md):
- ``job_create`` writes the Job, its items and the audit event in one transaction and
  enqueues ``vpp.job_dispatch`` on commit (other kinds create their Job and call ``job_enqueue``).
- ``job_dispatch`` picks the job's current phase (vpp/jobs/phases/__init__.py: the kind's
  phases in order) and returns one (phase, chunk) pair per chunk of open items, or one
  (phase, ALL_CHUNKS) for a single-task or job-level phase; the task enqueues them.
- ``job_process_chunk`` claims the chunk's items (or the job-level phase as a whole) with a
  conditional UPDATE and a claim token, runs the phase, and maps Apple's errors onto the
  items or the job. Attempts are capped; Retry-After pauses the whole job.
- When a phase has nothing open left the job moves to the next phase with a conditional
  UPDATE (exactly one worker re-dispatches) and finishes when none is left.
- ``jobs_sweep`` re-dispatches jobs that went silent (the worker died) or never reached the
  broker: one sweeper, one heartbeat and one "broker down" policy for every kind.

Tasks are enqueued by name (``vpp.job_dispatch``), so this module never imports vpp/tasks.py.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from celery import current_app
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from users.selectors import UserSelection
from vpp.apple.client import VppClient
from vpp.apple.errors import (
    RETRIED_LATER,
    NotPermittedError,
    PermanentVppError,
    RateLimiterUnavailableError,
    TransientVppError,
    VppError,
)
from vpp.business_account import BusinessNotConfigured
from vpp.content_token import NoContentToken, health_from_error, token_health_record_error, vpp_client
from vpp.jobs.apple_io import EventsStillPending, poll_interval
from vpp.jobs.items import (
    JobDeferred,
    backoff_seconds,
    heartbeat_while,
    job_heartbeat,
    job_limits,
    job_release,
    job_wait_clear,
    job_wait_set,
)
from vpp.jobs.phases import PHASES, JobKind, Phase, kind_for, no_client
from vpp.jobs.plan import SKIP_REASONS, STEP_CREATE, Plan, vpp_plan_build
from vpp.jobs.rows import rows_insert, rows_update
from vpp.models import (
    FINISHED_JOB_STATUSES,
    OPEN_ITEM_STATUSES,
    AuditEvent,
    ItemStatus,
    Job,
    JobAction,
    JobItem,
    JobStatus,
    VppUser,
    VppUserStatus,
)
from vpp.selectors import job_item_counts
from vpp.signals import vpp_event_after_commit

logger = logging.getLogger(__name__)

ALL_CHUNKS = -1
DISPATCH_TASK = "vpp.job_dispatch"


# --------------------------------------------------------------------------- creation


def _ensure_vpp_users(plan: Plan) -> dict[int, int]:
    """VppUser ids by device user id for invite rows; new rows get their clientUserId now."""
    rows = [row for row in plan.eligible if row.step == STEP_CREATE]
    missing = [row.user_id for row in rows if row.vpp_user_id is None]
    rows_insert([VppUser(user_id=user_id, status=VppUserStatus.PENDING) for user_id in missing])
    # Shown as "pending" at once, so a second invite of the same users is skipped.
    mapping = dict(VppUser.objects.filter(user_id__in=[row.user_id for row in rows]).values_list("user_id", "pk"))
    VppUser.objects.filter(pk__in=mapping.values()).update(status=VppUserStatus.PENDING)
    return mapping


class JobConflict(RuntimeError):
    """Another request created a job for some of the same users at the same moment (the database's
    uniqueness of a VPP user per device user refused this one); ``reason`` is the admin's sentence.
    Nothing was created."""

    reason = "Another request is starting a job for some of these users right now. Nothing was started: try again."

    def __init__(self):
        super().__init__(self.reason)


def job_create(
    *, plan: Plan, actor, selection: UserSelection, ip: str | None = None, retry_of: Job | None = None
) -> Job:
    """Job + items + audit event in one transaction; dispatch enqueued after commit.

    ``plan`` is built from ``selection.users()``; the selection is stored on the job (its JSON)
    and named in the audit event's sentence ("Send VPP invitation to 3 selected users").
    ``actor`` is the admin (None for the schedule); ``ip`` the request's address.
    Raises ``JobConflict`` (nothing created) when a simultaneous request won the race for some user.
    """
    try:
        return _job_create(plan=plan, actor=actor, selection=selection, ip=ip, retry_of=retry_of)
    except IntegrityError:
        raise JobConflict() from None


def _job_create(*, plan: Plan, actor, selection: UserSelection, ip: str | None, retry_of: Job | None) -> Job:
    limits = job_limits()
    with transaction.atomic():
        job = Job.objects.create(
            action=plan.action,
            started_by=actor if getattr(actor, "pk", None) else None,
            selection=selection.to_json(),
            channel=plan.channel,
            total=len(plan.rows),
            skipped=len(plan.skipped),
            retry_of=retry_of,
        )
        created = _ensure_vpp_users(plan) if plan.action == JobAction.INVITE else {}
        items = []
        for index, row in enumerate(plan.eligible):
            items.append(
                JobItem(
                    job=job,
                    user_id=row.user_id,
                    vpp_user_id=created.get(row.user_id, row.vpp_user_id),
                    user_label=row.label[:300],
                    step=row.step,
                    chunk=index // limits.chunk_size,
                    previous_status=row.vpp_status,
                )
            )
        for row in plan.skipped:
            items.append(
                JobItem(
                    job=job,
                    user_id=row.user_id,
                    vpp_user_id=row.vpp_user_id,
                    user_label=row.label[:300],
                    status=ItemStatus.SKIPPED,
                    skip_reason=row.skip_reason,
                    reason=_skip_text(row.skip_reason),
                )
            )
        rows_insert(items)
        if retry_of is not None and plan.action == JobAction.INVITE:
            _carry_sent_creates(job, retry_of)
        AuditEvent.objects.create(
            actor=job.started_by,
            actor_name=getattr(actor, "username", "") or "schedule",
            action=f"vpp.{plan.action}",
            target_summary=_summary(plan.action, selection, count=len(plan.rows)),
            count=len(plan.eligible),
            outcome=f"Job #{job.pk} queued: {len(plan.eligible):,} to act on, {len(plan.skipped):,} skipped.",
            ip=ip,
            job=job,
        )
        if not plan.eligible:
            _finish(job)
        else:
            transaction.on_commit(lambda: job_enqueue(job_id=job.pk))
    return job


def _skip_text(code: str) -> str:
    return SKIP_REASONS.get(code, code)


# The audit sentence of each bulk action, around who it acts on (UserSelection.describe).
_AUDIT_SENTENCES = {
    JobAction.INVITE: "Send VPP invitation to {who}",
    JobAction.DELETE: "Delete {who} from VPP",
    JobAction.SYNC: "Sync VPP for {who}",
    JobAction.CONVERT: "Link Managed Apple Accounts of {who}",
    JobAction.REMINDERS: "Send invitation reminders to {who}",
}


def _summary(action: str, selection: UserSelection, *, count: int) -> str:
    """The audit event's target_summary, a sentence about ``count`` selected users:
    "Send VPP invitation to all 137 users matching platform=macOS" (at most 500 characters)."""
    who = selection.describe(count=count)
    sentence = _AUDIT_SENTENCES.get(action)
    return (sentence.format(who=who) if sentence else f"{JobAction(action).label}: {who}")[:500]


def job_enqueue(*, job_id: int) -> bool:
    """Publish the dispatch message (by task name); a broker outage is recorded on the job, not
    raised, and the sweeper publishes it again. Returns True when the broker took it."""
    try:
        current_app.send_task(DISPATCH_TASK, args=[job_id])
    except Exception as exc:  # noqa: BLE001 - kombu OperationalError and friends
        job_broker_unreachable(job_id=job_id, exc=exc)
        return False
    if Job.objects.filter(pk=job_id).exclude(enqueue_error="").update(enqueue_error=""):
        job_wait_clear(job=job_id)
    return True


def broker_name() -> str:
    """The message broker, as the admin knows it: "Redis" or the local queue folder (``make run``)."""
    return "Redis" if getattr(settings, "REDIS_URL", "") else "the local queue folder"


def job_broker_unreachable(*, job_id: int, exc: Exception) -> None:
    """A message for ``job_id`` could not be published: record it for the panel and the sweeper
    (which publishes the job again once the broker is back)."""
    logger.warning("could not enqueue job %s: %s", job_id, exc)
    text = f"The message broker ({broker_name()}) is unreachable ({type(exc).__name__})."
    Job.objects.filter(pk=job_id).update(enqueue_error=text[:300])
    job_wait_set(job=job_id, reason=text)


def job_start_message(job: Job) -> tuple[bool, str]:
    """What "started" means right after a job was created and enqueued: (True, "… started (job #N).")
    when the broker took it, else (False, the truth: saved, not started, why, and what happens next)."""
    job.refresh_from_db()
    label = JobAction(job.action).label
    if job.finished and job.status != JobStatus.DONE:
        return False, f"{label} (job #{job.pk}) failed: {job.error or job.get_status_display()}"
    if job.enqueue_error:
        return False, (
            f"{label} (job #{job.pk}) is saved but not started: {job.enqueue_error} "
            "It starts by itself once the broker is back (every running worker checks every "
            f"{job_limits().sweep_seconds:.0f} s)."
        )
    return True, f"{label} started (job #{job.pk})."


# --------------------------------------------------------------------------- dispatch


def _open_items(job: Job):
    return JobItem.objects.filter(job=job, status__in=OPEN_ITEM_STATUSES)


def _phase_from(job: Job, kind: JobKind, start: int) -> Phase | None:
    """The first phase at or after ``start`` with work: a job-level phase, or one with open items."""
    open_steps = set(_open_items(job).values_list("step", flat=True).distinct())
    for phase in kind.phases[start:]:
        if phase.job_level or open_steps & set(phase.steps):
            return phase
    return None


def _current_phase(job: Job, kind: JobKind) -> Phase | None:
    """Where the job is: its recorded phase (resumed after a restart), else the first with work."""
    start = kind.index(job.phase) if job.phase in {p.name for p in kind.phases} else 0
    return _phase_from(job, kind, start)


def job_dispatch(*, job_id: int, client: VppClient | None = None) -> list[tuple[str, int]]:
    """Start or resume a job: returns the (phase, chunk) pairs to enqueue (``ALL_CHUNKS`` for a
    single-task or job-level phase). A finished or unknown job gives []."""
    job = Job.objects.filter(pk=job_id).first()
    if job is None or job.finished:
        return []
    now = timezone.now()
    started = Job.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(
        status=JobStatus.RUNNING, started_at=now, heartbeat_at=now
    )
    kind = kind_for(job.action)
    if started and kind.client is None:  # (a kind with its own client, or none, does not use the content token)
        with heartbeat_while(job_id=job.pk):
            if not _manager_unchanged(job, client):
                return []
    phase = _current_phase(job, kind)
    if phase is None:
        _finish(job)
        return []
    Job.objects.filter(pk=job.pk).update(phase=phase.name, heartbeat_at=now)
    job.phase = phase.name
    if phase.prepare is not None:
        with heartbeat_while(job_id=job.pk):
            if not _prepare(job, phase, client):
                return []
    if phase.single_task or phase.job_level:
        return [(phase.name, ALL_CHUNKS)]
    chunks = _open_items(job).filter(step__in=phase.steps).values_list("chunk", flat=True).distinct()
    return [(phase.name, chunk) for chunk in chunks.order_by("chunk")]


def _manager_unchanged(job: Job, client: VppClient | None) -> bool:
    """A job starts with one read of the unit's client config, so a unit another MDM took over
    since our last call stops the job before its first write (the client raises
    ``OtherManagerError`` on the answer; docs/apple-vpp.md#mdminfo). A transient failure here
    does not hold the job up: every later answer is watched the same way."""
    try:
        _job_client(job, client).client_config()  # a busy Apple shows on the panel meanwhile
    except (NoContentToken, PermanentVppError) as exc:
        _stop(job, exc)
        return False
    except TransientVppError as exc:
        logger.info("job %s: client config not read at start (%s)", job.pk, exc.message)
    return True


def _prepare(job: Job, phase: Phase, client: VppClient | None) -> bool:
    try:
        phase.prepare(job=job, client=_job_client(job, client))
    except (NoContentToken, PermanentVppError) as exc:
        _stop(job, exc)
        return False
    return True


def job_task_options(phase_name: str) -> dict:
    """Celery options for a chunk task of this phase (a longer time limit where the phase needs it)."""
    phase = PHASES.get(phase_name)
    if phase is None or phase.time_limit is None:
        return {}
    return {"time_limit": phase.time_limit, "soft_time_limit": max(1, phase.time_limit - 100)}


def job_advance(*, job: Job, phase: str) -> bool:
    """After a chunk: move to the next phase when this one has nothing open. True = re-dispatch."""
    kind = kind_for(job.action)
    current = kind.phases[kind.index(phase)]
    if not current.job_level and _open_items(job).filter(step__in=current.steps).exists():
        return False
    following = _phase_from(job, kind, kind.index(phase) + 1)
    if following is None:
        _finish(job)
        return False
    # Only one finishing chunk wins the phase change, so only one re-dispatch happens.
    return bool(
        Job.objects.filter(pk=job.pk, phase=phase, status=JobStatus.RUNNING).update(
            phase=following.name, phase_token="", phase_attempts=0
        )
    )


def _finish(job: Job, *, status: str = JobStatus.DONE, error: str = "") -> bool:
    """Close the job once (conditional UPDATE): final counts from its items, then the kind's
    finish hook or the generic audit event, in one transaction (a worker that dies in between
    leaves the job open for the sweeper, never finished without its record). Returns True for
    the one caller that closed it."""
    with transaction.atomic():
        return _finish_once(job, status=status, error=error)


def _finish_once(job: Job, *, status: str, error: str) -> bool:
    _settle_failed_vpp_users(job)
    counts = job_item_counts(job)
    # A job that ran to the end is on no phase any more; a stopped one shows where it stopped.
    phase = {"phase": "done"} if status == JobStatus.DONE else {}
    won = (
        Job.objects.filter(pk=job.pk)
        .exclude(status__in=FINISHED_JOB_STATUSES)
        .update(
            **phase,
            status=status,
            finished_at=timezone.now(),
            succeeded=counts[ItemStatus.SUCCEEDED],
            failed=counts[ItemStatus.FAILED],
            skipped=counts[ItemStatus.SKIPPED],
            error=error[:500],
            retry_after_until=None,
            delivery_retry_until=None,
            delivery_retry_reason="",
            phase_token="",
        )
    )
    if not won:
        return False
    job.refresh_from_db()
    vpp_event_after_commit(
        "job.finished",
        {
            "job_id": job.pk,
            "action": job.action,
            "status": job.status,
            "succeeded": job.succeeded,
            "failed": job.failed,
            "skipped": job.skipped,
        },
    )
    kind = kind_for(job.action)
    if kind.on_finish is not None:
        kind.on_finish(job)
        return True
    AuditEvent.objects.create(
        actor=job.started_by,
        actor_name=job.started_by.get_username() if job.started_by else "schedule",
        action=f"vpp.{job.action}.finished",
        target_summary=f"job #{job.pk}",
        count=job.total,
        outcome=(
            f"{job.get_status_display()}: {job.succeeded} succeeded, {job.failed} failed, "
            f"{job.skipped} skipped" + (f" — {error}" if error else "")
        )[:200],
        job=job,
    )
    return True


def _settle_failed_vpp_users(job: Job) -> None:
    """A failed step leaves each user in its last good state, with Apple's error on the row."""
    failed = JobItem.objects.filter(job=job, status=ItemStatus.FAILED, vpp_user__isnull=False)
    changed = []
    for item in failed.select_related("vpp_user").iterator(chunk_size=1000):
        vpp_user = item.vpp_user
        vpp_user.last_error_number = item.error_number
        vpp_user.last_error_message = item.reason[:500]
        if vpp_user.status == VppUserStatus.PENDING and job.action == JobAction.INVITE:
            if item.previous_status:
                vpp_user.status = item.previous_status
            elif item.request_sent_at is None:
                vpp_user.delete()  # never reached Apple: as if never invited (the UUID is not reused)
                continue
            # else: Apple may have it; it stays pending until a sync or the next invite settles it.
        changed.append(vpp_user)
    rows_update(changed, ["status", "last_error_number", "last_error_message"])


def job_fail(*, job: Job, message: str, error_number: int | None = None) -> None:
    """The whole job stops (e.g. token expired): every open item fails with the reason."""
    _open_items(job).update(status=ItemStatus.FAILED, reason=message[:500], error_number=error_number, claimed_at=None)
    _finish(job, status=JobStatus.FAILED, error=message)


# --------------------------------------------------------------------------- chunks


def _claim(job: Job, phase: Phase, chunk: int) -> tuple[str, list[JobItem]]:
    """Claim this chunk's pending items (and items a dead worker left in flight)."""
    limits = job_limits()
    now = timezone.now()
    stale = now - timedelta(seconds=limits.stale_seconds)
    items = JobItem.objects.filter(job=job, step__in=phase.steps)
    if chunk != ALL_CHUNKS:
        items = items.filter(chunk=chunk)
    claimable = Q(status=ItemStatus.PENDING) | Q(status=ItemStatus.IN_FLIGHT, claimed_at__lt=stale)
    # Poison items (a crash every time) fail instead of looping forever.
    items.filter(claimable, attempts__gte=limits.max_attempts).update(
        status=ItemStatus.FAILED,
        reason=f"Gave up after {limits.max_attempts} attempts (Apple or the mail/push service kept failing, "
        "or the worker kept stopping)",
    )
    token = uuid.uuid4().hex
    items.filter(claimable).update(
        status=ItemStatus.IN_FLIGHT, attempts=F("attempts") + 1, claimed_at=now, claim_token=token
    )
    claimed = list(
        JobItem.objects.filter(job=job, claim_token=token, status=ItemStatus.IN_FLIGHT)
        .select_related("vpp_user", "user")
        .order_by("id")
    )
    return token, claimed


def _claim_job_level(job: Job, phase: Phase) -> str | None:
    """Claim a job-level phase as a whole: free, or held by a task that went silent (no heartbeat
    for ``stale_seconds``). None when another live task holds it; the job fails once the phase
    has been claimed ``max_attempts`` times (a crash every time)."""
    limits = job_limits()
    now = timezone.now()
    stale = now - timedelta(seconds=limits.stale_seconds)
    token = uuid.uuid4().hex
    won = (
        Job.objects.filter(pk=job.pk, phase=phase.name)
        .filter(Q(phase_token="") | Q(heartbeat_at__lt=stale) | Q(heartbeat_at__isnull=True))
        .update(phase_token=token, phase_attempts=F("phase_attempts") + 1, heartbeat_at=now)
    )
    if not won:
        return None
    attempts = Job.objects.values_list("phase_attempts", flat=True).get(pk=job.pk)
    if attempts > limits.max_attempts:
        job_fail(
            job=job,
            message=f"Gave up after {limits.max_attempts} attempts (Apple kept failing, or the worker kept stopping).",
        )
        return None
    return token


def _release_job_level(job: Job, token: str, *, refund_attempt: bool) -> None:
    update = {"phase_token": ""}
    if refund_attempt:
        update["phase_attempts"] = F("phase_attempts") - 1
    Job.objects.filter(pk=job.pk, phase_token=token, phase_attempts__gt=0).update(**update)


def job_process_chunk(*, job_id: int, phase: str, chunk: int, client: VppClient | None = None) -> bool:
    """Run one chunk of one phase. Returns True when the job should be re-dispatched.

    Raises JobDeferred when the chunk must run again later (Retry-After, backoff, events
    still pending at Apple); the task re-queues it with that countdown.
    """
    job = Job.objects.filter(pk=job_id).first()
    if job is None or job.finished or job.phase != phase:
        return False  # redelivered or stale message: nothing to do
    now = timezone.now()
    if job.retry_after_until and job.retry_after_until > now:
        raise JobDeferred((job.retry_after_until - now).total_seconds())
    kind = kind_for(job.action)
    current = kind.phases[kind.index(phase)]
    if current.job_level:
        token = _claim_job_level(job, current)
        if token is None:
            return False
        items: list[JobItem] = []
    else:
        token, items = _claim(job, current, chunk)
    if items or current.job_level:
        with heartbeat_while(job_id=job.pk, token=token):
            if not _run(job, current, chunk, items, token, client):
                return False
        job_wait_clear(job=job)
    Job.objects.filter(pk=job.pk, retry_after_until__lte=timezone.now()).update(retry_after_until=None)
    job_heartbeat(job=job)
    return job_advance(job=job, phase=phase)


def _run(job: Job, phase: Phase, chunk: int, items: list[JobItem], token: str, client: VppClient | None) -> bool:
    """Run the phase on the claimed work and map failures. False when the job stopped."""
    try:
        phase.run(job=job, items=items, client=_job_client(job, client), token=token)
    except (NoContentToken, BusinessNotConfigured, PermanentVppError) as exc:
        if phase.job_level or _stops_job(exc):
            _stop(job, exc)
            return False
        _fail_claimed(token, exc.message, exc.error_number)
    except TransientVppError as exc:
        _release(job, phase, token)
        wait = float(exc.retry_after) if exc.retry_after else backoff_seconds(items) if items else _job_backoff(job)
        Job.objects.filter(pk=job.pk).update(retry_after_until=timezone.now() + timedelta(seconds=wait))
        job_wait_set(job=job, reason=wait_reason(exc), seconds=wait)
        raise JobDeferred(wait) from exc
    except JobDeferred as deferred:
        _release(job, phase, token, refund_attempt=not deferred.counts_as_attempt)
        reason = deferred.reason or (
            f"Apple is still processing the requests sent; they are checked every {poll_interval():.0f} s."
            if isinstance(deferred, EventsStillPending)
            else ""
        )
        if reason:
            job_wait_set(job=job, reason=reason, seconds=deferred.countdown)
        raise
    except Exception:
        logger.exception("job %s phase %s chunk %s failed", job.pk, phase.name, chunk)
        if phase.job_level:
            job_fail(job=job, message="Internal error while running this job (see the worker log).")
            return False
        _fail_claimed(token, "Internal error while processing this user (see the worker log).", None)
    if not phase.job_level:  # (a job-level phase keeps its claim until the job moves on: job_advance)
        job_release(token=token)  # safety net: nothing stays in flight after its task (attempts are capped)
    return True


def _job_client(job: Job, client: VppClient | None) -> VppClient | None:
    """The job's client (the kind's own, e.g. Apple Business, else the VPP client; None for a kind
    that never talks to Apple): its own retries (a slow or busy Apple, a limiter pause, Redis down)
    show on the panel while they happen."""
    factory = kind_for(job.action).client
    if factory is no_client:
        return None
    client = client or (factory() if factory is not None else vpp_client())
    client.on_wait = lambda exc, seconds: job_wait_set(job=job, reason=wait_reason(exc), seconds=seconds)
    return client


def wait_reason(exc: TransientVppError) -> str:
    """The panel's sentence for a transient failure: who is at fault (Apple, or our own Redis) and what it said."""
    happened = exc.message.replace(RETRIED_LATER, "").strip()  # the panel says when, next to it
    if isinstance(exc, RateLimiterUnavailableError):
        return happened
    status = f"HTTP {exc.http_status}, " if exc.http_status else ""
    if exc.retry_after:
        return f"Apple asked us to wait ({status}Retry-After {exc.retry_after:.0f} s): {happened}"
    return f"Apple's service failed ({happened}); trying again after a pause."


def _release(job: Job, phase: Phase, token: str, *, refund_attempt: bool = False) -> None:
    if phase.job_level:
        _release_job_level(job, token, refund_attempt=refund_attempt)
    else:
        job_release(token=token, refund_attempt=refund_attempt)


def _job_backoff(job: Job) -> float:
    attempts = Job.objects.values_list("phase_attempts", flat=True).get(pk=job.pk)
    return float(min(300, 2 ** min(max(attempts, 1), 8)))


def _stops_job(exc: Exception) -> bool:
    """No token, a token Apple refuses (expired, revoked, not accepted), or an account that may
    not do this: every other user of the job would fail the same way."""
    return isinstance(exc, NoContentToken | BusinessNotConfigured | NotPermittedError) or (
        isinstance(exc, VppError) and health_from_error(exc) is not None
    )


def _stop(job: Job, exc: Exception) -> None:
    """The whole job stops: record what Apple said about the token, fail what is left."""
    if isinstance(exc, VppError):
        token_health_record_error(exc)
        job_fail(job=job, message=f"{exc.message} The job stopped.", error_number=exc.error_number)
    else:
        job_fail(job=job, message=str(exc))


def _fail_claimed(token: str, message: str, error_number: int | None) -> None:
    JobItem.objects.filter(claim_token=token, status=ItemStatus.IN_FLIGHT).update(
        status=ItemStatus.FAILED, reason=message[:500], error_number=error_number
    )


# --------------------------------------------------------------------------- retries & sweeper


def job_retry_failed(*, job: Job, actor, ip: str | None = None) -> Job | None:
    """A new job over the failed items of ``job`` (eligibility re-checked); None, and no job, when
    none of its failed users exists any more.

    Never a second create: an invite item whose create may have reached Apple
    (``request_sent_at`` set) hands that mark and its event id to the new job's item, so the
    new job asks Apple about the user before sending anything (docs/vpp-jobs.md#guarantees).
    """
    failed = JobItem.objects.filter(job=job, status=ItemStatus.FAILED, user__isnull=False)
    user_ids = sorted(set(failed.values_list("user_id", flat=True)))
    if not user_ids:
        return None
    selection = UserSelection(ids=tuple(user_ids), retry_of=job.pk)
    plan = vpp_plan_build(action=job.action, users=selection.users(), channel=job.channel)
    if not plan.rows:  # deleted since the items were read: never an empty job
        return None
    return job_create(plan=plan, actor=actor, selection=selection, ip=ip, retry_of=job)


def _carry_sent_creates(job: Job, retry_of: Job) -> None:
    """Inside ``job_create``'s transaction: the retry's create items inherit ``request_sent_at`` and
    the event id from the failed job, so a create that may have reached Apple is checked first.

    Not carried: a user whose event Apple finished with a refusal for that user (Apple decided,
    nothing was created): the item has an event id and its own reason, not the job's stop."""
    stopped = Q(apple_event_id="") | (Q(reason=retry_of.error[:500]) if retry_of.error else Q(pk__in=[]))
    sent = JobItem.objects.filter(stopped, job=retry_of, request_sent_at__isnull=False, user__isnull=False)
    marks = {
        user_id: (sent_at, event)
        for user_id, sent_at, event in sent.values_list("user_id", "request_sent_at", "apple_event_id")
    }
    if not marks:
        return
    items = list(JobItem.objects.filter(job=job, step=STEP_CREATE, status=ItemStatus.PENDING, user_id__in=marks))
    for item in items:
        item.request_sent_at, item.apple_event_id = marks[item.user_id]
    rows_update(items, ["request_sent_at", "apple_event_id"])


def jobs_sweep() -> list[int]:
    """Re-dispatch the jobs whose work no live task holds. Returns their ids.

    A job is re-dispatched when (docs/operations.md#recovery): its enqueue failed (broker down);
    an item is in flight without a heartbeat for ``stale_seconds`` (its worker died: running
    tasks beat every ``heartbeat_seconds`` from a thread); its job-level phase is held by a task
    gone silent; or the whole job is silent that long past any wait it recorded (a message lost
    with a worker). Every worker runs this every ``sweep_seconds`` (vpp/tasks.py), beat every
    minute; two sweepers cannot both re-dispatch one job (conditional UPDATE on the heartbeat).
    """
    limits = job_limits()
    now = timezone.now()
    stale = now - timedelta(seconds=limits.stale_seconds)
    dead_items = JobItem.objects.filter(job=OuterRef("pk"), status=ItemStatus.IN_FLIGHT).filter(
        Q(claimed_at__lt=stale) | Q(claimed_at__isnull=True)
    )
    quiet = Q(heartbeat_at__lt=stale) | Q(heartbeat_at__isnull=True, created_at__lt=stale)
    no_wait = Q()
    for field in ("wait_until", "retry_after_until", "delivery_retry_until"):
        no_wait &= Q(**{f"{field}__isnull": True}) | Q(**{f"{field}__lt": stale})
    jobs = Job.objects.exclude(status__in=FINISHED_JOB_STATUSES).filter(
        ~Q(enqueue_error="") | Exists(dead_items) | (quiet & ~Q(phase_token="")) | (quiet & no_wait)
    )
    redispatched = []
    for job in jobs:
        silent = job.heartbeat_at is None or job.heartbeat_at < stale
        # Silent for stale_seconds: whoever held its job-level phase is gone too.
        update = {"heartbeat_at": now, **({"phase_token": ""} if silent else {})}
        same = Q(heartbeat_at__isnull=True) if job.heartbeat_at is None else Q(heartbeat_at=job.heartbeat_at)
        if not Job.objects.filter(same, pk=job.pk).update(**update):
            continue  # another sweeper (or the job itself) got there first
        # A dead task's items go back to the queue: claimable at once, and not swept again.
        JobItem.objects.filter(
            Q(claimed_at__lt=stale) | Q(claimed_at__isnull=True), job=job, status=ItemStatus.IN_FLIGHT
        ).update(status=ItemStatus.PENDING, claimed_at=None)
        logger.info("job %s: re-dispatched by the sweeper", job.pk)
        if job_enqueue(job_id=job.pk):
            redispatched.append(job.pk)
    return redispatched
