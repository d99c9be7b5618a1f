"""Content token, token health, location claim, assignment method and Apple notifications
(the VPP Server Setting page; docs/vpp-setting.md).

The token is decrypted only in memory to build a client, never logged, never rendered.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import socket
from dataclasses import dataclass
from importlib import metadata

from django.db import transaction
from django.db.models import F
from django.urls import reverse
from django.utils import timezone

from vpp import secrets as vault
from vpp.apple.client import VppClient
from vpp.apple.errors import TransientVppError, VppError
from vpp.apple.token_file import MAX_TOKEN_FILE_BYTES, TokenFileError, parse_content_token
from vpp.apple.types import ClientConfig, MdmInfo, managed_by_other_mdm
from vpp.audit import audit_record
from vpp.content_token import TokenCheck, health_from_error, not_now_text, token_health_store, vpp_client
from vpp.jobs.engine import job_fail
from vpp.models import FINISHED_JOB_STATUSES, AssignmentMethod, Job, TokenHealth, VppServerSetting, VppUser
from vpp.services import Refused

logger = logging.getLogger(__name__)

MAX_TOKEN_BYTES = MAX_TOKEN_FILE_BYTES
EXPIRING_WITHIN = dt.timedelta(days=30)
MDM_NAME = "kmconsole"
UNIT_CHANGED_JOB_TEXT = "The organizational unit changed (a token of another unit was uploaded); this job stopped."
NOTIFICATION_TYPES = ["USER_MANAGEMENT", "USER_ASSOCIATED", "ASSET_MANAGEMENT", "ASSET_COUNT"]


class TokenRejected(Refused, ValueError):
    """The uploaded token cannot be used; ``reason`` is a sentence for the admin."""


class TakeoverRefused(Refused):
    """Apple did not accept our claim on the location; ``reason`` is a sentence for the admin."""


class UnitChangeUnconfirmed(Refused):
    """The token names another organizational unit (or organisation) than the stored one and the
    admin has not confirmed the change; ``reason`` says what will happen, ``change`` the facts."""

    def __init__(self, change: UnitChange):
        super().__init__(change.sentence())
        self.change = change


@dataclass(frozen=True)
class UnitChange:
    """A token of another organizational unit replacing the stored one (docs/vpp-setting.md#unit-change).

    Apple names a unit by the ``uId`` every answer carries and an organisation by the token's
    ``orgName`` (docs/apple-vpp.md#token-file). ``vpp_users`` counts this console's VPP users of
    the old unit; ``notifications`` is True when Apple's notifications were set up for it.
    """

    old_unit: str
    new_unit: str
    old_org: str
    new_org: str
    vpp_users: int
    notifications: bool

    def sentence(self) -> str:
        new, old = self.new_unit or "an unnamed unit", self.old_unit or "the unit of the previous token"
        if self.old_org != self.new_org:
            text = (
                f"This token belongs to another organisation: {new} of {self.new_org} "
                f"instead of {old} of {self.old_org}."
            )
        else:
            text = f"This token belongs to another organizational unit: {new} instead of {old}."
        text += " This is not a renewal. If you save it, "
        if self.vpp_users:
            text += (
                f"the {self.vpp_users:,} VPP user{'s' if self.vpp_users != 1 else ''} of the current unit stop being "
                "VPP users here (kept in their history; at Apple they stay as they are, in the old unit), "
            )
        text += "the next sync reads the new unit in full"
        if self.notifications:
            text += ", and Apple's notifications are set up again for the new unit"
        return text + ". Confirm to use the new unit."


class NotificationSetupError(Refused):
    """Apple or this console refused the notification setup; ``reason`` is a sentence for the admin."""


def _version() -> str:
    try:
        return metadata.version("kmconsole")
    except metadata.PackageNotFoundError:
        return "dev"


def our_mdm_info(setting: VppServerSetting) -> MdmInfo:
    metadata_text = f"host={socket.gethostname()}; version={_version()}"
    return MdmInfo(id=str(setting.mdm_id), name=MDM_NAME, metadata=metadata_text[:255])


def _health_from_config(config: ClientConfig, setting: VppServerSetting, now: dt.datetime) -> TokenCheck:
    if managed_by_other_mdm(config.mdm_info, str(setting.mdm_id)):
        name = config.mdm_info.name if config.mdm_info else "another MDM"
        return TokenCheck(TokenHealth.OTHER_MDM, f"This location is managed by {name!r}.", config)
    expires = _expiry(config, setting)
    lag = _lagging_expiry_note(config, setting)
    if expires and expires <= now:
        return TokenCheck(TokenHealth.EXPIRED, "The token has expired.", config)
    if expires and expires - now <= EXPIRING_WITHIN:
        days = max(0, (expires - now).days)
        return TokenCheck(TokenHealth.EXPIRING, f"The token expires in {days} days; renew it soon.", config)
    return TokenCheck(TokenHealth.VALID, lag, config)


def _expiry(config: ClientConfig, setting: VppServerSetting) -> dt.datetime | None:
    """The token's expiry: the later of Apple's ``tokenExpirationDate`` and the uploaded file's
    ``expDate``. Apple can report the previous token's date for a while after a renewal
    (docs/apple-vpp.md#token-file); a file's own date is never later than its real expiry."""
    dates = [d for d in (config.token_expires_at, setting.token_file_expires_at) if d]
    return max(dates) if dates else setting.token_expires_at


def _lagging_expiry_note(config: ClientConfig, setting: VppServerSetting) -> str:
    apple, file = config.token_expires_at, setting.token_file_expires_at
    if not (apple and file and apple < file):
        return ""
    return (
        f"Apple still reports the previous expiry ({apple:%d %b %Y}); the uploaded token's file says "
        f"{file:%d %b %Y}, which is shown. Apple updates its date some time after a renewal."
    )


def _apply_config(setting: VppServerSetting, config: ClientConfig) -> None:
    setting.location_name = config.location_name or ""
    setting.country_code = (config.country_code or "")[:2]
    setting.token_uid = config.uid or ""
    setting.token_expires_at = _expiry(config, setting)
    other = managed_by_other_mdm(config.mdm_info, str(setting.mdm_id))
    setting.other_mdm_name = (config.mdm_info.name if other and config.mdm_info else "")[:200]


def _claim(client: VppClient, setting: VppServerSetting, now: dt.datetime) -> ClientConfig:
    config = client.update_client_config(mdm_info=our_mdm_info(setting))
    setting.mdm_claimed_at = now
    return config


def token_upload(
    *, data: str | bytes, actor, confirm_unit_change: bool = False, now: dt.datetime | None = None
) -> VppServerSetting:
    """Validate a .vpptoken, check it at Apple, store it encrypted (replacing any previous one).

    ``data`` is the file's content (at most ``MAX_TOKEN_BYTES``) or the pasted text. Checked
    with ``GET /client/config``, then the location is claimed with our ``mdmInfo``. A location
    held by another MDM is stored but not claimed (health "other_mdm"); taking it over is a
    separate, confirmed step (``token_takeover``). Audited as ``vpp.token_uploaded`` or
    ``vpp.token_replaced`` (organisation, location, expiry, health; never the token). Raises
    ``TokenRejected`` for a file that cannot be a token, a token Apple refuses, or an Apple
    that cannot answer within the page's budget (``vpp_client(interactive=True)``: "Apple is
    busy; try again after 14:05 UTC"); nothing is stored then. A permanent Apple error while
    claiming the location (after the check passed) propagates as ``VppError``, also with
    nothing stored.

    A token of another organizational unit (Apple's ``uId``) or organisation than the stored
    one is not a renewal: without ``confirm_unit_change`` it raises ``UnitChangeUnconfirmed``
    (what will happen, nothing stored). Confirmed, the old unit's VPP users are moved to
    history (``unit_change_apply``), Apple's notifications are set up again for the new unit
    when they were configured, and the change is audited as ``vpp.unit_changed``.
    """
    now = now or timezone.now()
    try:
        parsed = parse_content_token(data, now=now)
    except TokenFileError as exc:
        raise TokenRejected(exc.reason) from None
    setting = VppServerSetting.load()
    client = vpp_client(setting, raw_token=parsed.raw, interactive=True)
    try:
        config = client.client_config()
    except TransientVppError as exc:
        raise TokenRejected(f"The token could not be checked with Apple: {not_now_text(exc)}") from None
    except VppError as exc:
        check = health_from_error(exc)
        raise TokenRejected(check.detail if check else f"Apple could not check the token: {exc.message}") from None
    replaced = setting.has_token
    change = unit_change_of(setting, org_name=parsed.org_name, config=config)
    if change and not confirm_unit_change:
        raise UnitChangeUnconfirmed(change)
    public_url = _public_url(setting.notification_url) if change and setting.notification_configured_at else ""
    with transaction.atomic():
        if change:
            unit_change_apply(setting, change, actor=actor)
        setting.content_token_encrypted = vault.encrypt(parsed.raw)
        setting.token_org_name = parsed.org_name[:200]
        setting.token_expires_at = setting.token_file_expires_at = parsed.expires_at
        setting.token_uploaded_at = now
        setting.users_version_id = ""  # a (possibly different) unit: the next sync is a full one
        try:
            _claim_unless_held(client, setting, config, now)
        except TransientVppError as exc:
            raise TokenRejected(
                f"Apple checked the token, but the location could not be claimed: {not_now_text(exc)}"
            ) from None
    audit_record(
        actor=actor,
        action="vpp.token_replaced" if replaced else "vpp.token_uploaded",
        details={
            "org_name": setting.token_org_name,
            "location": setting.location_name,
            "expires_at": setting.token_expires_at.isoformat(),
            "health": setting.token_health,
        },
    )
    if public_url:
        _notifications_again(public_url, actor)
        setting.refresh_from_db()
    return setting


def unit_change_of(setting: VppServerSetting, *, org_name: str, config: ClientConfig) -> UnitChange | None:
    """The change a new token makes: None for a renewal (same ``uId`` and organisation) or a first
    upload. A removed token's unit counts (``token_remove`` keeps its ``uId`` and organisation)."""
    if not (setting.has_token or setting.token_uid):
        return None
    other_unit = bool(setting.token_uid and config.uid and setting.token_uid != config.uid)
    other_org = bool(setting.token_org_name and org_name and setting.token_org_name != org_name[:200])
    if not (other_unit or other_org):
        return None
    return UnitChange(
        old_unit=setting.location_name,
        new_unit=config.location_name or "",
        old_org=setting.token_org_name,
        new_org=org_name,
        vpp_users=VppUser.objects.filter(unit_uid="").count(),
        notifications=bool(setting.notification_configured_at),
    )


def unit_change_apply(setting: VppServerSetting, change: UnitChange, *, actor) -> int:
    """Leave the old unit (the caller saves ``setting`` in the same transaction).

    Every VppUser of the old unit keeps the old ``uId`` in ``unit_uid`` and lets go of its
    device user (kept in ``former_user``): they are history, no VPP users of the new unit, and a
    device user can be invited there. Unfinished jobs stop (their users are the old unit's).
    The notification subscription is forgotten (its bearer token too). Returns the number of
    VPP users moved; audited as ``vpp.unit_changed``.
    """
    old_uid = setting.token_uid or "unknown"
    for job in Job.objects.exclude(status__in=FINISHED_JOB_STATUSES):
        job_fail(job=job, message=UNIT_CHANGED_JOB_TEXT)  # its users belong to the old unit
    moved = VppUser.objects.filter(unit_uid="").update(unit_uid=old_uid, former_user=F("user"), user=None)
    setting.notification_url = setting.notification_auth_token_encrypted = ""
    setting.notification_configured_at = None
    setting.mdm_claimed_at = None
    audit_record(
        actor=actor,
        action="vpp.unit_changed",
        details={
            "from": f"{change.old_unit} ({change.old_org}, uId {old_uid})",
            "to": f"{change.new_unit} ({change.new_org})",
            "vpp_users_moved_to_history": moved,
            "notifications_reset": change.notifications,
        },
    )
    return moved


def _public_url(notification_url: str) -> str:
    return notification_url.removesuffix(reverse("vpp-notifications")) if notification_url else ""


def _notifications_again(public_url: str, actor) -> None:
    """Set up Apple's notifications for the new unit as they were for the old one; a refusal is
    recorded on the setting (the page shows "not configured" and the admin sets them up again)."""
    try:
        notifications_configure(public_url=public_url, actor=actor)
    except (NotificationSetupError, VppError) as exc:
        logger.warning("notifications not set up again after the unit change: %s", exc)


def _claim_unless_held(client: VppClient, setting: VppServerSetting, config: ClientConfig, now: dt.datetime) -> None:
    """Record the location and claim it with our mdmInfo, unless another MDM holds it; store the health."""
    _apply_config(setting, config)
    if not managed_by_other_mdm(config.mdm_info, str(setting.mdm_id)) and _needs_claim(config, setting):
        config = _claim(client, setting, now)
    token_health_store(check=_health_from_config(config, setting, now), now=now, setting=setting)


def token_claim(*, now: dt.datetime | None = None) -> VppServerSetting:
    """Check the stored token at Apple and claim its location as an upload does (the demo set-up)."""
    now = now or timezone.now()
    setting = VppServerSetting.load()
    client = vpp_client(setting, watch_manager=False)
    _claim_unless_held(client, setting, client.client_config(), now)
    return setting


def _needs_claim(config: ClientConfig, setting: VppServerSetting) -> bool:
    mine = our_mdm_info(setting)
    info = config.mdm_info
    return info is None or (info.id, info.name, info.metadata) != (mine.id, mine.name, mine.metadata)


def token_takeover(*, actor, now: dt.datetime | None = None) -> VppServerSetting:
    """Claim a location another MDM holds (after the admin confirmed what that means).

    Writes our ``mdmInfo`` with ``POST /client/config`` and audits ``vpp.location_taken_over``.
    Raises ``NoContentToken`` without a stored token, ``vpp.secrets.SecretUnreadable`` when
    it cannot be decrypted, and ``TakeoverRefused`` when Apple answers with an error (nothing
    is stored then).
    """
    now = now or timezone.now()
    setting = VppServerSetting.load()
    client = vpp_client(setting, watch_manager=False, interactive=True)
    previous = setting.other_mdm_name
    try:
        config = _claim(client, setting, now)
    except TransientVppError as exc:
        raise TakeoverRefused(f"The takeover could not be sent to Apple: {not_now_text(exc)}") from None
    except VppError as exc:
        raise TakeoverRefused(f"Apple refused the takeover: {exc.message}") from None
    _apply_config(setting, config)
    token_health_store(check=_health_from_config(config, setting, now), now=now, setting=setting)
    audit_record(
        actor=actor,
        action="vpp.location_taken_over",
        details={"location": setting.location_name, "previous_mdm": previous},
    )
    return setting


def token_remove(*, actor) -> VppServerSetting:
    """Forget the content token and what was learnt from it (unit name, health, notification token).

    Nothing is sent to Apple. VPP actions are off until a new token is uploaded. The unit's
    ``uId`` and the organisation stay: the VPP users here still belong to that unit, and a
    token of another unit uploaded next is a unit change (docs/vpp-setting.md#unit-change).
    Audited as ``vpp.token_removed`` with the organisation and unit it had.
    """
    setting = VppServerSetting.load()
    details = {"org_name": setting.token_org_name, "location": setting.location_name}
    for field in (
        "content_token_encrypted",
        "location_name",
        "country_code",
        "token_health_detail",
        "other_mdm_name",
        "users_version_id",
        "notification_auth_token_encrypted",
    ):
        setattr(setting, field, "")
    setting.token_expires_at = setting.token_uploaded_at = setting.token_health_checked_at = None
    setting.token_file_expires_at = None
    setting.mdm_claimed_at = setting.notification_configured_at = None
    setting.token_health = TokenHealth.MISSING
    setting.save()
    audit_record(actor=actor, action="vpp.token_removed", details=details)
    return setting


def token_check_health(*, now: dt.datetime | None = None, interactive: bool = False) -> TokenCheck:
    """Ask Apple about the stored token and record the health (the daily check, and on demand).

    Returns the ``TokenCheck`` recorded. Apple's errors are recorded, not raised; transient
    failures (Apple down, rate limited, Redis down) leave the recorded health as it was and
    return it with ``not_checked`` saying why nothing was checked. ``interactive=True`` for
    "Check with Apple now" (the page's budget, kmconsole/timeouts.py).
    """
    now = now or timezone.now()
    setting = VppServerSetting.load()
    if not setting.has_token:
        check = TokenCheck(TokenHealth.MISSING, "")
        token_health_store(check=check, now=now, setting=setting)
        return check
    try:
        config = vpp_client(setting, watch_manager=False, interactive=interactive).client_config()
    except TransientVppError as exc:
        logger.warning("token health check postponed: %s", exc.message)
        return TokenCheck(setting.token_health, setting.token_health_detail, not_checked=not_now_text(exc))
    except VppError as exc:
        check = health_from_error(exc) or TokenCheck(TokenHealth.INVALID, exc.message)
    except vault.SecretUnreadable:
        check = TokenCheck(TokenHealth.INVALID, "The stored token cannot be decrypted with the configured keys.")
    else:
        _apply_config(setting, config)
        check = _health_from_config(config, setting, now)
    token_health_store(check=check, now=now, setting=setting)
    return check


def assignment_update(*, method: str, actor) -> VppServerSetting:
    """Set how licences are assigned: ``method`` is an ``AssignmentMethod`` value ("user" or "device").

    Device-based assignment turns the VPP user actions off (``vpp_actions_disabled_reason``).
    A change is audited as ``vpp.assignment_changed`` with ``from``/``to``; saving the same
    method again records nothing. Raises ``ValueError`` for an unknown method.
    """
    if method not in AssignmentMethod.values:
        raise ValueError(f"unknown assignment method {method!r}")
    with transaction.atomic():
        setting = VppServerSetting.load_for_update()
        before = setting.assignment_method
        if before != method:
            setting.assignment_method = method
            setting.save(update_fields=["assignment_method", "updated_at"])
            audit_record(actor=actor, action="vpp.assignment_changed", details={"from": before, "to": method})
    return setting


def notification_url_for(public_url: str) -> str:
    return public_url.rstrip("/") + reverse("vpp-notifications")


def notifications_configure(*, public_url: str, actor) -> VppServerSetting:
    """Point Apple's notifications at this console with a fresh random bearer token.

    ``public_url`` is the console's public address (``https://host[/prefix]``); Apple gets
    ``<public_url>/vpp/notifications/`` through ``POST /client/config``. The new token is
    committed *before* calling Apple, because Apple delivers a TEST_NOTIFICATION while
    handling the request and rejects the setup if we refuse it. Audited as
    ``vpp.notifications_configured`` with the new and previous URL (never the bearer token).
    Raises ``NoContentToken`` without a stored token, ``vpp.secrets.SecretUnreadable`` when
    it cannot be decrypted, and ``NotificationSetupError`` when Apple refuses (the previous
    bearer token is restored).
    """
    setting = VppServerSetting.load()
    client = vpp_client(setting, interactive=True)
    url = notification_url_for(public_url)
    bearer = secrets.token_urlsafe(32)
    old_encrypted, old_url = setting.notification_auth_token_encrypted, setting.notification_url
    with transaction.atomic():
        setting.notification_auth_token_encrypted = vault.encrypt(bearer)
        setting.save(update_fields=["notification_auth_token_encrypted", "updated_at"])
    try:
        client.update_client_config(
            notification_url=url, notification_auth_token=bearer, notification_types=NOTIFICATION_TYPES
        )
    except VppError as exc:
        setting.notification_auth_token_encrypted = old_encrypted
        setting.save(update_fields=["notification_auth_token_encrypted", "updated_at"])
        if isinstance(exc, TransientVppError):
            raise NotificationSetupError(
                f"The notification address could not be sent to Apple: {not_now_text(exc)}"
            ) from None
        raise NotificationSetupError(f"Apple did not accept the notification address: {exc.message}") from None
    setting.notification_url = url
    setting.notification_configured_at = timezone.now()
    setting.save()
    audit_record(actor=actor, action="vpp.notifications_configured", details={"url": url, "previous_url": old_url})
    return setting
