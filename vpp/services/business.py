"""Setting › Apple Business: the API account (private key, client id, key id), "Check connection",
the scope, and "Sync people and devices" (by hand, and on the schedule tick).

The private key is encrypted like the content token (vpp/secrets.py) and never shown again. The
sync runs on the one job engine (kind ``directory``: vpp/jobs/phases/directory.py), one at a
time (``AppleBusinessSetting.running_job_id``, claimed with a conditional UPDATE). Before the
first real run a dry run must have finished, so the admin sees what would change first. People
the sync deactivates are retired from VPP by the full sync's "retire" rule: ``directory_follow_up``
starts that sync when the directory sync has finished (docs/apple-business.md#deactivation).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from vpp import secrets as vault
from vpp.apple.business import BusinessClient, BusinessKeyError, load_private_key
from vpp.apple.errors import VppError
from vpp.audit import audit_record
from vpp.business_account import (
    BusinessNotConfigured,
    business_client,
    business_health_from_error,
    business_health_store,
)
from vpp.jobs.engine import job_enqueue
from vpp.models import AppleBusinessSetting, Job, JobAction, JobStatus, SyncResult, TokenHealth
from vpp.services import Refused
from vpp.services.sync import SyncBlocked, sync_start

logger = logging.getLogger(__name__)

DRY_RUN_FIRST = "Run a dry run first: it shows what the first sync would change."


class AccountRejected(Refused):
    """The uploaded account cannot be used (bad key, or Apple Business refused it); nothing changed."""


class DirectorySyncBlocked(Refused):
    """The sync cannot start (no account, or no dry run before the first real run)."""


# ----------------------------------------------------------------------------- the account


def business_account_save(
    *, client_id: str, key_id: str, private_key: str | bytes | None, actor, api_base_url: str = "", token_url: str = ""
) -> AppleBusinessSetting:
    """Store the API account. ``private_key`` (PEM) may be None to keep the stored one (ids changed).
    The key must be EC P-256; the account is then checked at Apple Business (a token is fetched)
    before anything is stored. Raises ``AccountRejected`` (nothing changed)."""
    setting = AppleBusinessSetting.load()
    client_id, key_id = client_id.strip(), key_id.strip()
    if private_key is None and not setting.private_key_encrypted:
        raise AccountRejected("Upload the API account's private key (.pem).")
    pem = private_key.decode("utf-8", errors="replace") if isinstance(private_key, bytes) else private_key
    try:
        if pem is not None:
            load_private_key(pem)
        else:
            pem = vault.decrypt(setting.private_key_encrypted)
    except BusinessKeyError as exc:
        raise AccountRejected(str(exc)) from None
    candidate = AppleBusinessSetting(
        client_id=client_id, key_id=key_id, api_base_url=api_base_url or setting.api_base_url,
        token_url=token_url or setting.token_url,
    )  # fmt: skip
    try:
        overview = _overview(business_client(candidate, private_key=pem))
    except VppError as exc:
        if business_health_from_error(exc) is not None:
            raise AccountRejected(exc.message) from None
        raise AccountRejected(f"{exc.message} Nothing was stored; try again.") from None
    with transaction.atomic():
        setting = AppleBusinessSetting.load_for_update()
        setting.client_id, setting.key_id = client_id, key_id
        setting.api_base_url, setting.token_url = candidate.api_base_url, candidate.token_url
        setting.private_key_encrypted = vault.encrypt(pem.strip() + "\n")
        setting.key_uploaded_at = timezone.now()
        _apply_overview(setting, overview)
        setting.save()
        audit_record(actor=actor, action="business.account_saved", details={"client_id": client_id, "key_id": key_id})
    return setting


def business_account_remove(*, actor) -> None:
    """Forget the API account (the key is deleted); synced people stay."""
    AppleBusinessSetting.load()
    AppleBusinessSetting.objects.filter(pk=1).update(
        client_id="", key_id="", private_key_encrypted="", key_uploaded_at=None, health=TokenHealth.MISSING,
        health_detail="", org_name="", people_count=None, device_count=None, groups=[], scope_group_ids=[],
    )  # fmt: skip
    audit_record(actor=actor, action="business.account_removed")


@dataclass(frozen=True)
class Overview:
    """What "Check connection" reads: the organisation (its top organizational unit's name),
    people and devices (``meta.paging.total``; None when Apple omits it), and the user groups."""

    org_name: str
    people: int | None
    devices: int | None
    groups: list[dict]


def _overview(client: BusinessClient) -> Overview:
    units = client.org_units()
    groups = [{"id": g.id, "name": g.name, "type": g.type, "members": g.member_count} for g in client.user_groups()]
    return Overview(
        org_name=units[0].name if units else "",
        people=client.count("/v1/users"),
        devices=client.count("/v1/orgDevices"),
        groups=groups,
    )


def _apply_overview(setting: AppleBusinessSetting, overview: Overview) -> None:
    setting.org_name = overview.org_name[:200]
    setting.people_count, setting.device_count = overview.people, overview.devices
    setting.groups = overview.groups
    setting.health, setting.health_detail, setting.checked_at = TokenHealth.VALID, "", timezone.now()


def business_connection_check(*, actor=None) -> AppleBusinessSetting:
    """ "Check connection": a token, the organisation, its people, devices and groups; the health is
    recorded either way (a refused account: invalid, with Apple's reason). Raises
    ``BusinessNotConfigured``; a transient failure raises ``AccountRejected`` with its sentence."""
    try:
        overview = _overview(business_client())
    except VppError as exc:
        found = business_health_from_error(exc)
        if found is not None:
            business_health_store(health=found[0], detail=found[1])
            return AppleBusinessSetting.load()
        raise AccountRejected(exc.message) from None
    with transaction.atomic():
        setting = AppleBusinessSetting.load_for_update()
        _apply_overview(setting, overview)
        setting.save()
    audit_record(
        actor=actor, action="business.checked", details={"people": overview.people, "devices": overview.devices}
    )
    return setting


def business_scope_save(*, group_ids: list[str], on_schedule: bool, actor) -> AppleBusinessSetting:
    """The sync's scope (only these user groups' members; empty = everyone) and the schedule switch.
    Unknown group ids are refused (``Refused``)."""
    setting = AppleBusinessSetting.load()
    known = {g["id"] for g in setting.groups}
    unknown = [g for g in group_ids if g not in known]
    if unknown:
        raise Refused(f"Unknown user group(s): {', '.join(unknown)}. Check the connection to reload the groups.")
    AppleBusinessSetting.objects.filter(pk=1).update(scope_group_ids=list(group_ids), on_schedule=on_schedule)
    audit_record(actor=actor, action="business.scope_saved", details={"groups": ",".join(group_ids) or "everyone"})
    return AppleBusinessSetting.load()


# ----------------------------------------------------------------------------- the sync


@dataclass(frozen=True)
class DirectoryStart:
    job: Job
    started: bool  # False: a sync was already running (``job`` is that one)


def directory_sync_start(*, actor=None, dry_run: bool = False, trigger: str = "manual") -> DirectoryStart:
    """Create the directory sync Job (or the dry run) and enqueue it after commit; one at a time.

    Raises ``DirectorySyncBlocked`` without an account, or for a real run before any dry run has
    finished (``DRY_RUN_FIRST``)."""
    setting = AppleBusinessSetting.load()
    if not setting.configured:
        raise DirectorySyncBlocked(str(BusinessNotConfigured()))
    if not dry_run and setting.first_sync_at is None and setting.last_dry_run_job_id is None:
        raise DirectorySyncBlocked(DRY_RUN_FIRST)
    with transaction.atomic():
        setting = AppleBusinessSetting.load_for_update()
        running = Job.objects.filter(pk=setting.running_job_id).first() if setting.running_job_id else None
        if running is not None and not running.finished:
            return DirectoryStart(running, started=False)
        job = Job.objects.create(
            action=JobAction.DIRECTORY,
            started_by=actor if getattr(actor, "pk", None) else None,
            status=JobStatus.QUEUED,
            selection={"dry_run": dry_run, "groups": list(setting.scope_group_ids), "trigger": trigger},
        )
        setting.running_job_id = job.pk
        if not dry_run:
            setting.last_job_id, setting.last_counts = job.pk, {}
        else:
            setting.dry_run_counts = {}
        setting.last_result = SyncResult.RUNNING
        setting.save()
        audit_record(
            actor=actor,
            action="business.dry_run_started" if dry_run else "business.sync_started",
            details={"trigger": trigger, "groups": ",".join(setting.scope_group_ids) or "everyone"},
            job=job,
        )
        transaction.on_commit(lambda: job_enqueue(job_id=job.pk))
    return DirectoryStart(job, started=True)


def directory_follow_up(*, job_id: int) -> Job | None:
    """After a directory sync that deactivated people: start the VPP full sync, whose "retire"
    phase revokes their licences and retires them at Apple. Returns its job (None when the VPP
    content token blocks it: recorded in the audit trail; the next scheduled sync retires them)."""
    job = Job.objects.filter(pk=job_id).first()
    trigger = "schedule" if job and job.selection.get("trigger") == "schedule" else "directory"
    try:
        return sync_start(actor=job.started_by if job else None, trigger=trigger).job
    except SyncBlocked as exc:
        audit_record(actor=None, action="business.follow_up_skipped", details={"reason": exc.reason}, job=job)
        return None


def directory_schedule_tick() -> bool:
    """The schedule claimed a run: with "sync on the schedule" on and a first real sync done, sync
    people first (its finish starts the VPP full sync when it deactivated people). True when started."""
    setting = AppleBusinessSetting.load()
    if not (setting.on_schedule and setting.configured and setting.first_sync_at):
        return False
    try:
        directory_sync_start(actor=None, trigger="schedule")
    except DirectorySyncBlocked as exc:
        logger.info("scheduled directory sync skipped: %s", exc.reason)
        return False
    return True
