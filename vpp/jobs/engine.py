"""Bulk VPP jobs: create (one transaction), dispatch in chunks, claim items, finish once.

Lifecycle (reliability notes §1.5-1.7):
- ``job_create`` writes the Job, its items and the audit event in one transaction and
  enqueues ``vpp.job_dispatch`` on commit.
- ``job_dispatch`` picks the job's current phase (the first with open items) and enqueues one
  ``vpp.job_chunk`` per chunk of that phase. A phase handler (invite/delete/sync modules)
  processes the claimed items and moves each to its next step or to a final status.
- When a chunk leaves no open item in the phase, the job moves to the next phase with a
  conditional UPDATE (so exactly one worker re-dispatches), and finishes when none are left.
- Items are claimed with a conditional UPDATE and a claim token; attempts are capped.
  Work of a dead worker is found by ``jobs_sweep`` (stale heartbeat) and re-dispatched.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from vpp.apple.client import VppClient
from vpp.apple.errors import (
    NotPermittedError,
    PermanentVppError,
    TokenExpiredError,
    TokenInvalidError,
    TokenRevokedError,
    TransientVppError,
)
from vpp.jobs.plan import STEP_CREATE, Plan
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
    TokenHealth,
    VppServerSetting,
    VppUser,
    VppUserStatus,
)

logger = logging.getLogger(__name__)

# Phases per action, in order, and the item steps each phase takes. An invite chunk carries
# its users through create → read back → deliver in one task, so email for early chunks
# overlaps Apple's rate-limited calls for later ones.
PHASES: dict[str, list[str]] = {
    JobAction.INVITE: ["invite"],
    JobAction.DELETE: ["delete"],
    JobAction.SYNC: ["update", "read"],
}
PHASE_STEPS: dict[str, tuple[str, ...]] = {
    "invite": ("create", "readback", "deliver"),
    "delete": ("delete",),
    "update": ("update",),
    "read": ("read",),
}
# Phases that read Apple's listing once for all items run as a single task.
SINGLE_TASK_PHASES = {"read"}
ALL_CHUNKS = -1


def engine_jobs():
    """Jobs this module runs (the scheduled full sync of vpp/jobs/phases/full_sync.py runs itself)."""
    return Job.objects.filter(sync_run__isnull=True)


class JobDeferred(Exception):
    """The chunk must run again later (Apple said wait, or events are still pending).

    ``counts_as_attempt``: waiting for Apple's events is progress and costs no attempt, but a
    retry after a failure (e.g. the mail server was down) does, so attempts stay capped.
    """

    def __init__(self, countdown: float, *, counts_as_attempt: bool = False):
        super().__init__(f"deferred for {countdown:.1f} s")
        self.countdown = countdown
        self.counts_as_attempt = counts_as_attempt


class NoTokenError(Exception):
    """No content token uploaded: the console cannot act at Apple."""


@dataclass(frozen=True)
class JobLimits:
    chunk_size: int
    max_attempts: int
    stale_seconds: int


def job_limits() -> JobLimits:
    return JobLimits(
        chunk_size=getattr(settings, "VPP_JOB_CHUNK_SIZE", 1000),
        max_attempts=getattr(settings, "VPP_JOB_MAX_ATTEMPTS", 8),
        stale_seconds=getattr(settings, "VPP_JOB_STALE_SECONDS", 300),
    )


def vpp_client_for_jobs() -> VppClient:
    setting = VppServerSetting.load()
    if not setting.has_token:
        raise NoTokenError("Upload a content token in Setting › iOS/macOS › VPP Server Setting.")
    return VppClient.from_setting(setting)


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


def job_create(*, plan: Plan, actor, selection: dict, ip: str | None = None, retry_of: Job | None = None) -> Job:
    """Job + items + audit event in one transaction; dispatch enqueued after commit."""
    limits = job_limits()
    with transaction.atomic():
        job = Job.objects.create(
            action=plan.action,
            started_by=actor if getattr(actor, "pk", None) else None,
            selection=selection,
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
        AuditEvent.objects.create(
            actor=job.started_by,
            actor_name=getattr(actor, "username", "") or "schedule",
            action=f"vpp.{plan.action}",
            target_summary=_summary(selection),
            count=len(plan.eligible),
            outcome=f"queued job #{job.pk} ({len(plan.eligible)} to act on, {len(plan.skipped)} skipped)",
            ip=ip,
            job=job,
        )
        if not plan.eligible:
            _finish(job)
        else:
            transaction.on_commit(lambda: job_enqueue(job_id=job.pk))
    return job


def _skip_text(code: str) -> str:
    from vpp.jobs.plan import SKIP_REASONS

    return SKIP_REASONS.get(code, code)


def _summary(selection: dict) -> str:
    if selection.get("all_matching"):
        filters = ", ".join(f"{k}={v}" for k, v in sorted(selection.get("filter", {}).items()) if v)
        return f"all users matching {filters or 'no filter'}"[:500]
    if "ids" in selection:
        return f"{len(selection['ids'])} ticked users"
    return ", ".join(f"{k}={v}" for k, v in sorted(selection.items()))[:500]


def job_enqueue(*, job_id: int) -> bool:
    """Publish the dispatch message; a broker outage is recorded, not raised (the sweeper retries)."""
    from vpp.tasks import job_dispatch

    try:
        job_dispatch.apply_async(args=[job_id])
    except Exception as exc:  # noqa: BLE001 - kombu OperationalError and friends
        logger.warning("could not enqueue job %s: %s", job_id, exc)
        Job.objects.filter(pk=job_id).update(enqueue_error="Background work is unavailable right now")
        return False
    Job.objects.filter(pk=job_id).exclude(enqueue_error="").update(enqueue_error="")
    return True


# --------------------------------------------------------------------------- dispatch


def _open_items(job: Job):
    return JobItem.objects.filter(job=job, status__in=OPEN_ITEM_STATUSES)


def job_dispatch(*, job_id: int, client: VppClient | None = None) -> list[tuple[str, int]]:
    """Start or resume a job: returns the (phase, chunk) pairs to enqueue."""
    job = engine_jobs().filter(pk=job_id).first()
    if job is None or job.finished:
        return []
    now = timezone.now()
    Job.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(
        status=JobStatus.RUNNING, started_at=now, heartbeat_at=now
    )
    phase = _current_phase(job)
    if phase is None:
        _finish(job)
        return []
    Job.objects.filter(pk=job.pk).update(phase=phase, heartbeat_at=now)
    if phase == "invite" and not job.apple_version_id and not _capture_version(job, client):
        return []
    if phase in SINGLE_TASK_PHASES:
        return [(phase, ALL_CHUNKS)]
    open_items = _open_items(job).filter(step__in=PHASE_STEPS[phase])
    chunks = open_items.values_list("chunk", flat=True).distinct().order_by("chunk")
    return [(phase, chunk) for chunk in chunks]


def _capture_version(job: Job, client: VppClient | None) -> bool:
    """Before the first create: Apple's users versionId (the read-back is a delta from it)."""
    from vpp.jobs.phases.invite import job_capture_version

    try:
        job_capture_version(job=job, client=client or vpp_client_for_jobs())
    except NoTokenError as exc:
        job_fail(job=job, message=str(exc))
        return False
    except (TokenExpiredError, TokenRevokedError, TokenInvalidError) as exc:
        _token_broken(exc)
        job_fail(job=job, message=f"{exc.message} The job stopped.", error_number=exc.error_number)
        return False
    except TransientVppError:
        pass  # no delta then: the read-back asks Apple user by user
    return True


def _current_phase(job: Job) -> str | None:
    steps = set(_open_items(job).values_list("step", flat=True).distinct())
    return next((phase for phase in PHASES[job.action] if steps & set(PHASE_STEPS[phase])), None)


def job_advance(*, job: Job, phase: str) -> bool:
    """After a chunk: move to the next phase when this one has no open items. True = re-dispatch."""
    if _open_items(job).filter(step__in=PHASE_STEPS[phase]).exists():
        return False
    next_phase = _current_phase(job)
    if next_phase is None:
        return _finish(job) and False
    # Only one finishing chunk wins the phase change, so only one re-dispatch happens.
    return bool(Job.objects.filter(pk=job.pk, phase=phase, status=JobStatus.RUNNING).update(phase=next_phase))


def _finish(job: Job, *, status: str = JobStatus.DONE, error: str = "") -> bool:
    from vpp.selectors import job_item_counts

    _settle_failed_vpp_users(job)
    counts = job_item_counts(job)
    won = (
        Job.objects.filter(pk=job.pk)
        .exclude(status__in=FINISHED_JOB_STATUSES)
        .update(
            status=status,
            finished_at=timezone.now(),
            succeeded=counts[ItemStatus.SUCCEEDED],
            failed=counts[ItemStatus.FAILED],
            skipped=counts[ItemStatus.SKIPPED],
            error=error[:500],
            retry_after_until=None,
            delivery_retry_until=None,
            delivery_retry_reason="",
        )
    )
    if won:
        job.refresh_from_db()
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
    return bool(won)


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


def job_cancel(*, job: Job) -> None:
    _open_items(job).update(status=ItemStatus.FAILED, reason="Cancelled before it ran", claimed_at=None)
    _finish(job, status=JobStatus.CANCELLED, error="Cancelled by an admin")


# --------------------------------------------------------------------------- chunks


def _claim(job: Job, phase: str, chunk: int) -> tuple[str, list[JobItem]]:
    """Claim this chunk's pending items (and items a dead worker left in flight)."""
    limits = job_limits()
    now = timezone.now()
    stale = now - timedelta(seconds=limits.stale_seconds)
    items = JobItem.objects.filter(job=job, step__in=PHASE_STEPS[phase])
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


def job_release(*, token: str, refund_attempt: bool = False) -> None:
    """Give claimed, unfinished items back to the queue (transient error, waiting for Apple)."""
    update = {"status": ItemStatus.PENDING, "claimed_at": None}
    if refund_attempt:
        update["attempts"] = F("attempts") - 1
    JobItem.objects.filter(claim_token=token, status=ItemStatus.IN_FLIGHT, attempts__gt=0).update(**update)


def job_heartbeat(*, job: Job, token: str | None = None) -> None:
    now = timezone.now()
    Job.objects.filter(pk=job.pk).update(heartbeat_at=now)
    if token:
        JobItem.objects.filter(claim_token=token, status=ItemStatus.IN_FLIGHT).update(claimed_at=now)


def _handler(phase: str):
    from vpp.jobs.phases import delete, invite, sync

    return {
        "invite": invite.invite_phase,
        "delete": delete.delete_phase,
        "update": sync.sync_update_phase,
        "read": sync.sync_read_phase,
    }[phase]


def job_process_chunk(*, job_id: int, phase: str, chunk: int, client: VppClient | None = None) -> bool:
    """Run one chunk of one phase. Returns True when the job should be re-dispatched.

    Raises JobDeferred when the chunk must run again later.
    """
    job = engine_jobs().filter(pk=job_id).first()
    if job is None or job.finished or job.phase != phase:
        return False  # redelivered or stale message: nothing to do
    now = timezone.now()
    if job.retry_after_until and job.retry_after_until > now:
        raise JobDeferred((job.retry_after_until - now).total_seconds())
    token, items = _claim(job, phase, chunk)
    if items:
        try:
            client = client or vpp_client_for_jobs()
            _handler(phase)(job=job, items=items, client=client, token=token)
        except NoTokenError as exc:
            job_fail(job=job, message=str(exc))
            return False
        except (TokenExpiredError, TokenRevokedError, TokenInvalidError, NotPermittedError) as exc:
            _token_broken(exc)
            job_fail(job=job, message=f"{exc.message} The job stopped.", error_number=exc.error_number)
            return False
        except TransientVppError as exc:
            job_release(token=token)
            wait = _transient_wait(exc, items)
            Job.objects.filter(pk=job.pk).update(retry_after_until=timezone.now() + timedelta(seconds=wait))
            raise JobDeferred(wait) from exc
        except JobDeferred as deferred:
            job_release(token=token, refund_attempt=not deferred.counts_as_attempt)
            raise
        except PermanentVppError as exc:
            _fail_claimed(token, exc.message, exc.error_number)
        except Exception:
            logger.exception("job %s phase %s chunk %s failed", job.pk, phase, chunk)
            _fail_claimed(token, "Internal error while processing this user (see the worker log).", None)
        job_release(token=token)  # safety net: nothing stays in flight after its task (attempts are capped)
    Job.objects.filter(pk=job.pk, retry_after_until__lte=timezone.now()).update(retry_after_until=None)
    job_heartbeat(job=job)
    return job_advance(job=job, phase=phase)


def _fail_claimed(token: str, message: str, error_number: int | None) -> None:
    JobItem.objects.filter(claim_token=token, status=ItemStatus.IN_FLIGHT).update(
        status=ItemStatus.FAILED, reason=message[:500], error_number=error_number
    )


def _transient_wait(exc: TransientVppError, items: list[JobItem]) -> float:
    if exc.retry_after:
        return float(exc.retry_after)
    return backoff_seconds(items)


def backoff_seconds(items: list[JobItem]) -> float:
    """Exponential backoff by the items' attempts so far: 2, 4, 8 … 256 s (then attempts run out)."""
    attempts = max((item.attempts for item in items), default=1)
    return float(min(300, 2 ** min(attempts, 8)))


def _token_broken(exc: PermanentVppError) -> None:
    if isinstance(exc, NotPermittedError):
        return  # the token is fine; this account may not do this (shown on the job)
    health = {
        TokenExpiredError: TokenHealth.EXPIRED,
        TokenRevokedError: TokenHealth.REVOKED,
    }.get(type(exc), TokenHealth.INVALID)
    VppServerSetting.objects.filter(pk=1).update(
        token_health=health, token_health_detail=exc.message[:500], token_health_checked_at=timezone.now()
    )


# --------------------------------------------------------------------------- retries & sweeper


def job_retry_failed(*, job: Job, actor, ip: str | None = None) -> Job | None:
    """A new job over the failed items of ``job`` (eligibility re-checked)."""
    from users.models import User
    from vpp.jobs.plan import vpp_plan_build

    user_ids = list(JobItem.objects.filter(job=job, status=ItemStatus.FAILED).values_list("user_id", flat=True))
    user_ids = [pk for pk in user_ids if pk is not None]
    if not user_ids:
        return None
    plan = vpp_plan_build(action=job.action, users=User.objects.filter(pk__in=user_ids), channel=job.channel)
    return job_create(plan=plan, actor=actor, selection={"retry_of": job.pk, "ids": user_ids}, ip=ip, retry_of=job)


def jobs_sweep() -> list[int]:
    """Re-dispatch jobs that went silent (worker died) or never reached the broker."""
    limits = job_limits()
    stale = timezone.now() - timedelta(seconds=limits.stale_seconds)
    # Full syncs run as one task of their own (vpp/jobs/phases/full_sync.py), not in chunks.
    jobs = (
        Job.objects.exclude(status__in=FINISHED_JOB_STATUSES)
        .exclude(action=JobAction.SYNC_ALL)
        .filter(Q(heartbeat_at__lt=stale) | Q(heartbeat_at__isnull=True, created_at__lt=stale) | ~Q(enqueue_error=""))
    )
    redispatched = []
    for job in jobs:
        Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now())
        if job_enqueue(job_id=job.pk):
            redispatched.append(job.pk)
    return redispatched
