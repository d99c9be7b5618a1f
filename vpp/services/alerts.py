"""Alerts before things break: the content token expiring in 30, 7 and 1 days, expired, revoked
or managed by another MDM, and the scheduled sync failing three runs in a row.

``alerts_check`` runs on every beat tick (``vpp.sync_tick``) and after the daily token check
(``vpp.token_health_check``). Each alert is sent once per change of state: the state last raised
is stored on ``AlertSetting`` and moved with a conditional UPDATE (a second tick finds it moved
and sends nothing); going back to "ok" re-arms it. Every alert raised is recorded in the audit log
(``vpp.alert_sent``), emailed (Django's mail: SMTP or the file outbox) to the recipients when
alerts are on, and shown as a banner to admins with the settings permission (``alerts_active``).
Apple's token lifetime (one year) and errors: docs/apple-vpp.md#token-file.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone

from vpp.audit import audit_record
from vpp.models import FINISHED_JOB_STATUSES, AlertSetting, Job, JobAction, JobStatus, TokenHealth, VppServerSetting
from vpp.selectors import token_problem

logger = logging.getLogger(__name__)

SETTINGS_PERMISSION = "vpp.change_vppserversetting"
# The backend that holds permissions (the login throttle's backend is listed too, so with_perm must be told).
PERMISSION_BACKEND = "django.contrib.auth.backends.ModelBackend"
OK = "ok"
# Days before expiry at which an alert goes out, most urgent first: state "expires_<days>".
EXPIRY_DAYS = (1, 7, 30)
SYNC_FAILURES_IN_A_ROW = 3
SYNC_FAILED = "failed_3"


@dataclass(frozen=True)
class Alert:
    """One alert raised: which (``kind`` token or sync), its ``state`` and the sentence sent."""

    kind: str
    state: str
    text: str


def token_alert_state(setting: VppServerSetting, now: dt.datetime) -> str:
    """ "ok", "expires_30", "expires_7", "expires_1", "expired", "revoked" or "other_mdm"."""
    if not setting.has_token:
        return OK
    if setting.token_health in (TokenHealth.EXPIRED, TokenHealth.REVOKED, TokenHealth.OTHER_MDM):
        return str(setting.token_health)
    expires = setting.token_expires_at
    if expires is None:
        return OK
    if expires <= now:
        return TokenHealth.EXPIRED.value
    for days in EXPIRY_DAYS:
        if expires - now <= dt.timedelta(days=days):
            return f"expires_{days}"
    return OK


def sync_alert_state() -> str:
    """SYNC_FAILED when the last SYNC_FAILURES_IN_A_ROW scheduled full syncs all failed, else "ok"."""
    last = list(
        Job.objects.filter(action=JobAction.SYNC_ALL, selection__trigger="schedule", status__in=FINISHED_JOB_STATUSES)
        .order_by("-created_at", "-id")
        .values_list("status", flat=True)[:SYNC_FAILURES_IN_A_ROW]
    )
    failed = len(last) == SYNC_FAILURES_IN_A_ROW and all(status == JobStatus.FAILED for status in last)
    return SYNC_FAILED if failed else OK


def alert_text(kind: str, state: str, setting: VppServerSetting) -> str:
    """The sentence of an alert (email body's first line, banner, audit)."""
    if kind == "sync":
        return (
            f"The scheduled VPP sync has failed {SYNC_FAILURES_IN_A_ROW} runs in a row. "
            "Open Setting › iOS/macOS › VPP Server Setting to see why."
        )
    if state.startswith("expires_"):
        local = timezone.localtime(setting.token_expires_at)
        when = f"{local:%Y-%m-%d %H:%M} {local.tzname()}"
        days = state.removeprefix("expires_")
        return (
            f"The VPP content token{_of(setting)} expires within {days} day{'' if days == '1' else 's'} "
            f"({when}). Download a renewed token in Apple Business Manager and upload it in "
            "Setting › iOS/macOS › VPP Server Setting."
        )
    if state == TokenHealth.EXPIRED and setting.token_health != TokenHealth.EXPIRED:
        return f"The VPP content token{_of(setting)} has expired; upload a renewed token."
    return token_problem(setting) or f"The VPP content token needs attention ({state})."


def _of(setting: VppServerSetting) -> str:
    return f" of {setting.token_org_name}" if setting.token_org_name else ""


def alert_recipients(alerts: AlertSetting) -> list[str]:
    """The configured addresses, or else every active admin with the settings permission who has an email."""
    if alerts.recipient_list:
        return alerts.recipient_list
    admins = (
        get_user_model()
        ._default_manager.with_perm(SETTINGS_PERMISSION, backend=PERMISSION_BACKEND)
        .filter(is_active=True)
    )
    return sorted({admin.email for admin in admins if admin.email})


def alerts_check(*, now: dt.datetime | None = None) -> list[Alert]:
    """Evaluate every alert; send and record those whose state changed to an alert state.
    Returns the alerts raised by this call. Never raises for a mail server that refuses: the
    state is put back, so the next tick tries again."""
    now = now or timezone.now()
    setting = VppServerSetting.load()
    states = {"token": token_alert_state(setting, now), "sync": sync_alert_state()}
    raised = []
    for kind, state in states.items():
        field = f"{kind}_state"
        old = getattr(AlertSetting.load(), field)
        if state == old or not AlertSetting.objects.filter(pk=1, **{field: old}).update(**{field: state}):
            continue  # unchanged, or another tick moved it first
        if state == OK:
            continue
        alert = Alert(kind=kind, state=state, text=alert_text(kind, state, setting))
        if _deliver(alert):
            raised.append(alert)
        else:
            AlertSetting.objects.filter(pk=1, **{field: state}).update(**{field: old})
    return raised


def _deliver(alert: Alert) -> bool:
    alerts = AlertSetting.load()
    recipients = alert_recipients(alerts) if alerts.enabled else []
    outcome = "alerts are off" if not alerts.enabled else "no recipient with an email address"
    if recipients:
        message = EmailMessage(
            subject=f"kmconsole: {alert.text.split('. ')[0].split('; ')[0].rstrip('.')}",
            body=f"{alert.text}\n\nThis alert is sent once; it is sent again only if the state changes.\n",
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=recipients,
        )
        try:
            message.send()
        except Exception as exc:  # noqa: BLE001 - any mail failure: retried at the next tick
            logger.warning("alert %s/%s not sent: %s", alert.kind, alert.state, exc)
            return False
        outcome = f"emailed to {', '.join(recipients)}"
    audit_record(
        actor=None,
        action="vpp.alert_sent",
        details={"alert": alert.text},
        count=len(recipients),
        outcome=outcome[:200],
    )
    return True


def alerts_active(setting: VppServerSetting | None = None) -> list[Alert]:
    """The alerts in force now (for the banner), from the stored states."""
    alerts = AlertSetting.load()
    setting = setting or VppServerSetting.load()
    return [
        Alert(kind=kind, state=state, text=alert_text(kind, state, setting))
        for kind, state in (("token", alerts.token_state), ("sync", alerts.sync_state))
        if state != OK
    ]


class RecipientsInvalid(ValueError):
    """A recipient is not an email address; ``str(exc)`` is the sentence for the admin."""


def alerts_update(*, enabled: bool, recipients: str, actor) -> AlertSetting:
    """Turn alerts on/off and set the recipients (addresses separated by lines or commas; blank:
    every admin with the settings permission). Raises RecipientsInvalid; nothing is stored then."""
    addresses = [line.strip() for line in recipients.replace(",", "\n").splitlines() if line.strip()]
    for address in addresses:
        try:
            validate_email(address)
        except ValidationError:
            raise RecipientsInvalid(f"“{address[:100]}” is not an email address.") from None
    with transaction.atomic():
        alerts = AlertSetting.load_for_update()
        before = (alerts.enabled, alerts.recipient_list)
        alerts.enabled, alerts.recipients = enabled, "\n".join(addresses)
        alerts.save()
        if before != (enabled, addresses):
            who = ", ".join(addresses) or "every admin with the settings permission"
            audit_record(
                actor=actor,
                action="vpp.alerts_changed",
                details={"enabled": "on" if enabled else "off", "recipients": who},
            )
    return alerts
