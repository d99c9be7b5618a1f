"""Sync people and devices from Apple Business: two job-level phases on the one job engine.

1. ``people``: Apple Business's people (``GET /v1/users``, every page) → device users through
   ``users.services.users_upsert`` (matched by Apple's person id, then — for users that existed
   before — by Managed Apple Account or email). With a scope of user groups, only their members
   are created or updated. After the last page, people here whose Apple Business id the listing
   no longer holds are deactivated (``users_deactivate``); people Apple Business lists as not
   ACTIVE are deactivated by the upsert. A listing that stops midway deactivates nobody.
2. ``devices``: the organization's devices (``GET /v1/orgDevices``) → model, platform and Apple
   Business status of the devices here with the same serial number (``devices_upsert``). The API
   does not say whose a device is (docs/apple-business.md#devices), so unknown serials are counted,
   not created.

Every change is a JobItem (created / updated / deactivated, with the fields); a person that
cannot be written fails alone. ``Job.selection["dry_run"]``: the same reads and comparisons,
nothing written — the items say what would change. Each phase is safe to run again from its start
(its items are written again). Deactivated people are then retired from VPP by the full sync's
"retire" rule, which the finish hook starts (vpp/services/business.py).
"""

from __future__ import annotations

import logging
from collections import Counter

from django.db import IntegrityError, transaction
from django.utils import timezone

from users.models import Platform, User
from users.services import (
    DeviceRecord,
    PersonRecord,
    UpsertChange,
    UpsertResult,
    devices_upsert,
    users_deactivate,
    users_upsert,
)
from vpp.apple.business import BusinessClient, BusinessUser
from vpp.apple.errors import VppError
from vpp.audit import audit_record
from vpp.business_account import business_health_record_error, business_health_store
from vpp.jobs.rows import rows_insert
from vpp.models import AppleBusinessSetting, ItemStatus, Job, JobItem, JobStatus, SyncResult, TokenHealth

logger = logging.getLogger(__name__)

FOLLOW_UP_TASK = "vpp.directory_follow_up"  # a VPP full sync retires the people deactivated here
REMOVED = "Removed from Apple Business: deactivated here."
PLATFORMS = {"iPhone": Platform.IOS, "iPad": Platform.IPADOS, "Mac": Platform.MACOS}
_VERBS = {"created": "Created", "updated": "Updated", "deactivated": "Deactivated", "skipped": "Skipped"}
_DRY_VERBS = {"created": "Would create", "updated": "Would update", "deactivated": "Would deactivate"}


def _dry(job: Job) -> bool:
    return bool(job.selection.get("dry_run"))


def person_record(person: BusinessUser) -> PersonRecord:
    """A person of Apple Business as ``users_upsert`` takes it (active = status ACTIVE)."""
    return PersonRecord(
        key=person.id,
        display_name=person.display_name,
        email=person.email,
        managed_apple_account=person.managed_apple_account,
        employee_number=person.employee_number,
        department=person.department,
        is_active=person.active,
    )


def people_phase(*, job: Job, items: list[JobItem], client: BusinessClient, token: str) -> None:
    """Phase ``people`` (job-level; ``items`` is empty)."""
    counts = _start(job, "people", ("people", "in_scope", "created", "updated", "deactivated", "unchanged", "failed"))
    scope = _scope(job, client)
    present: set[str] = set()
    try:
        for page in client.iter_users():
            present.update(person.id for person in page)
            records = [person_record(p) for p in page if scope is None or p.id in scope]
            counts["people"] += len(page)
            counts["in_scope"] += len(records)
            _apply(job, records, counts)
            _beat(job, counts)
    except VppError as exc:
        business_health_record_error(exc)
        raise
    here = set(
        User.objects.filter(is_active=True).exclude(apple_business_id="").values_list("apple_business_id", flat=True)
    )
    removed = sorted(here - present)
    if removed:
        result = users_deactivate(keys=removed, dry_run=_dry(job), reason=REMOVED)
        _record(job, "people", result, counts)
    _beat(job, counts)
    business_health_store(health=TokenHealth.VALID, detail="")


def _scope(job: Job, client: BusinessClient) -> set[str] | None:
    groups = job.selection.get("groups") or []
    if not groups:
        return None
    members: set[str] = set()
    for group_id in groups:
        members.update(client.group_member_ids(group_id))
    return members


def _apply(job: Job, records: list[PersonRecord], counts: Counter) -> None:
    """One page through users_upsert; a page the database refuses is written person by person,
    so one person's failure (e.g. a Managed Apple Account another active user holds) fails alone."""
    try:
        with transaction.atomic():
            result = users_upsert(records=records, create_inactive=False, dry_run=_dry(job))
    except IntegrityError:
        result = UpsertResult()
        for record in records:
            try:
                with transaction.atomic():
                    one = users_upsert(records=[record], create_inactive=False, dry_run=_dry(job))
            except IntegrityError as exc:
                logger.info("directory sync: %s refused: %s", record.label, exc)
                result.changes.append(UpsertChange("failed", record.label, None, detail=_refusal(exc)))
                continue
            result.changes.extend(one.changes)
            result.unchanged += one.unchanged
    _record(job, "people", result, counts)


def _refusal(exc: IntegrityError) -> str:
    text = str(exc).lower()
    if "managed_apple_account" in text:
        return "Another active user here already has this Managed Apple Account; nothing was changed for this person."
    if "login_id" in text:
        return "Another user here already has this login ID; nothing was changed for this person."
    return "The database refused this person's values; nothing was changed for this person."


def _record(job: Job, step: str, result: UpsertResult, counts: Counter) -> None:
    """One JobItem per change (per-row results), and the counters."""
    dry = _dry(job)
    rows = []
    for change in result.changes:
        action = "deactivated" if change.action == "updated" and _deactivates(change) else change.action
        if step == "people":  # (the devices phase keeps its own counters)
            counts[action] += 1
        verb = (_DRY_VERBS if dry else _VERBS).get(action, action.capitalize())
        text = f"{verb}" + (f": {change.detail}" if change.detail else "") if action != "failed" else change.detail
        status = {"failed": ItemStatus.FAILED, "skipped": ItemStatus.SKIPPED}.get(action, ItemStatus.SUCCEEDED)
        rows.append(
            JobItem(
                job=job,
                user_id=change.user_id if step == "people" else None,
                user_label=change.label[:300],
                step=step,
                status=status,
                reason=text[:500],
            )
        )
    if step == "people":
        counts["unchanged"] += result.unchanged
    counts["items"] += len(rows)
    counts["items_failed"] += sum(1 for row in rows if row.status == ItemStatus.FAILED)
    counts["items_skipped"] += sum(1 for row in rows if row.status == ItemStatus.SKIPPED)
    rows_insert(rows)


def _deactivates(change: UpsertChange) -> bool:
    return "is_active" in change.fields and "→ False" in change.detail


def devices_phase(*, job: Job, items: list[JobItem], client: BusinessClient, token: str) -> None:
    """Phase ``devices`` (job-level): the organization's devices onto the devices here by serial."""
    counts = _start(job, "devices", ("devices", "devices_updated", "devices_unchanged", "devices_unknown"))
    for page in client.iter_devices():
        records = [
            DeviceRecord(
                serial_number=d.serial_number,
                model=d.model,
                platform=PLATFORMS.get(d.product_family, ""),
                org_status=d.status,
            )
            for d in page
        ]
        result = devices_upsert(records=records, dry_run=_dry(job))
        counts["devices"] += len(records)
        counts["devices_unchanged"] += result.unchanged
        counts["devices_unknown"] += result.count("skipped")
        changed = UpsertResult(changes=[c for c in result.changes if c.action in ("created", "updated")])
        counts["devices_updated"] += len(changed.changes)
        _record(job, "devices", changed, counts)
        _beat(job, counts)


# ----------------------------------------------------------------------------- counters


def _start(job: Job, step: str, keys: tuple[str, ...]) -> Counter:
    """The job's counters as phase ``step`` starts: its own at 0, its items (from a run a dead
    worker left) removed, so the phase can run again from its start."""
    JobItem.objects.filter(job=job, step=step).delete()
    counts = Counter(_counts(job))
    for key in keys:
        counts[key] = 0
    left = JobItem.objects.filter(job=job)
    counts["items"] = left.count()
    counts["items_failed"] = left.filter(status=ItemStatus.FAILED).count()
    counts["items_skipped"] = left.filter(status=ItemStatus.SKIPPED).count()
    return counts


def _counts(job: Job) -> dict:
    setting = AppleBusinessSetting.load()
    return setting.dry_run_counts if _dry(job) else setting.last_counts


def _beat(job: Job, counts: Counter) -> None:
    """Progress: the counters on the setting (the page reads them) and the job's totals."""
    field = "dry_run_counts" if _dry(job) else "last_counts"
    AppleBusinessSetting.objects.filter(pk=1, running_job_id=job.pk).update(**{field: dict(counts)})
    items, failed, skipped = counts["items"], counts["items_failed"], counts["items_skipped"]
    Job.objects.filter(pk=job.pk).update(
        total=items, succeeded=items - failed - skipped, failed=failed, skipped=skipped, heartbeat_at=timezone.now()
    )


def directory_finished(job: Job) -> None:
    """The engine finished the job: the result on the setting page, the one-at-a-time claim freed,
    the audit event, and — after a real run that deactivated people — the follow-up that retires
    their VPP users at Apple (a VPP full sync, started after commit)."""
    setting = AppleBusinessSetting.load()
    dry = _dry(job)
    counts = dict(setting.dry_run_counts if dry else setting.last_counts)
    if job.status != JobStatus.DONE:
        result = SyncResult.FAILED
    else:
        result = SyncResult.PARTIAL if job.failed else SyncResult.SUCCEEDED
    now = timezone.now()
    fields = {"running_job_id": None, "last_result": result, "last_finished_at": now}
    if dry:
        fields["last_dry_run_job_id"] = job.pk
    elif job.status == JobStatus.DONE and setting.first_sync_at is None:
        fields["first_sync_at"] = now
    AppleBusinessSetting.objects.filter(pk=1, running_job_id=job.pk).update(**fields)
    audit_record(
        actor=job.started_by,
        action="business.dry_run_finished" if dry else "business.sync_finished",
        details={"result": result, **counts},
        outcome=result,
        count=counts.get("people", 0),
        job=job,
    )
    # On the schedule the VPP full sync always follows (it waits for the people it may retire).
    if not dry and (counts.get("deactivated") or job.selection.get("trigger") == "schedule"):
        from celery import current_app

        transaction.on_commit(lambda: _follow_up(current_app, job.pk))


def _follow_up(app, job_id: int) -> None:
    try:
        app.send_task(FOLLOW_UP_TASK, kwargs={"job_id": job_id})
    except Exception:
        logger.warning("could not start the VPP full sync after directory sync %s", job_id, exc_info=True)
