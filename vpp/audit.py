"""The audit trail of the settings page and the sync: an ``AuditEvent`` row (append-only,
vpp/models/audit.py) and a line on the ``kmconsole.audit`` logger for each action.
Callers never pass secrets in ``details``.
"""

from __future__ import annotations

import logging

from vpp.models import AuditEvent

logger = logging.getLogger("kmconsole.audit")


# How each settings/sync action reads in the audit log: one sentence, from its ``details``.
FIELD_NAMES = {
    "enabled": "sync automatically",
    "mode": "when",
    "interval_hours": "every (hours)",
    "time_of_day": "daily at",
    "timezone": "time zone",
    "convert_during_sync": "link Managed Apple Accounts after each sync",
    "reminders_enabled": "reminders",
    "reminder_after_days": "remind after (days)",
    "reminder_max": "at most (reminders)",
    "reminder_escalate": "escalate push → email",
    "invitation_channel": "channel",
    "invitation_sender": "sender",
    "invitation_subject": "subject",
    "invitation_body_text": "plain-text body",
    "invitation_body_html": "HTML body",
}


def _changes(details: dict) -> str:
    return ", ".join(f"{FIELD_NAMES.get(key, key)} {value}" for key, value in details.items())


def _fields(details: dict) -> str:
    names = [FIELD_NAMES.get(name, name) for name in str(details.get("fields", "")).split(",") if name]
    return ", ".join(names) or "nothing"


def _sync_finished(d: dict) -> str:
    failed = f", {d['failed']} failed" if d.get("failed") else ""
    return (
        f"Full sync finished ({d.get('result', '')}): {d.get('apple_users', 0)} Apple users read, "
        f"{d.get('updated', 0)} updated here, {d.get('emails_pushed', 0)} email changes and "
        f"{d.get('retired_at_apple', 0)} retirements sent to Apple{failed}."
    )


def _token(verb: str, d: dict) -> str:
    where = f"{d.get('org_name') or 'an organisation'} ({d.get('location') or 'no location'})"
    return f"{verb} {where}, expiring {str(d.get('expires_at', ''))[:10]}; health {d.get('health', '')}."


SENTENCES = {
    # vpp/person.py finds the person again by "device user #<id> (" (the timeline, the audit log's link).
    "vpp.person.invitation_link_shown": lambda d: (
        f"Showed the invitation link of device user #{d['user']} ({d['login']}), clientUserId {d['clientUserId']}."
    ),
    "vpp.schedule_changed": lambda d: f"Changed the automatic sync: {_changes(d)}.",
    "vpp.sync_started": lambda d: f"Started a full sync ({d.get('trigger', '')}).",
    "vpp.sync_finished": _sync_finished,
    "vpp.invitation_changed": lambda d: f"Changed the invitation settings: {_fields(d)}.",
    "vpp.token_uploaded": lambda d: _token("Uploaded the content token of", d),
    "vpp.token_replaced": lambda d: _token("Replaced the content token with one of", d),
    "vpp.token_removed": lambda d: (
        f"Removed the content token{' of ' + d['org_name'] if d.get('org_name') else ''}"
        f"{' (' + d['location'] + ')' if d.get('location') else ''}."
    ),
    "vpp.location_taken_over": lambda d: (
        f"Took over the location {d.get('location') or ''} from {d.get('previous_mdm') or 'another MDM'}."
    ),
    "vpp.unit_changed": lambda d: (
        f"Changed the organizational unit from {d.get('from')} to {d.get('to')}: "
        f"{d.get('vpp_users_moved_to_history', 0)} VPP users moved to history"
        f"{', Apple notifications to set up again' if d.get('notifications_reset') else ''}."
    ),
    "accounts.admin_added": lambda d: f"Added the administrator {d['admin']} with the role {d['role']}.",
    "accounts.role_changed": lambda d: f"Changed the role of {d['admin']} from {d['from']} to {d['to']}.",
    "accounts.admin_deactivated": lambda d: f"Deactivated the administrator {d['admin']}.",
    "accounts.admin_reactivated": lambda d: f"Reactivated the administrator {d['admin']}.",
    "vpp.alert_sent": lambda d: str(d["alert"]),
    "vpp.lifecycle_changed": lambda d: f"Changed linking and reminders: {_changes(d)}.",
    "vpp.alerts_changed": lambda d: f"Turned alerts {d['enabled']}; recipients: {d['recipients']}.",
    "vpp.assignment_changed": lambda d: f"Changed the assignment method from {d.get('from')} to {d.get('to')}.",
    # The REST API (kmconsole/api, docs/api.md): every call names its token.
    "api.call": lambda d: f"{d['call']} with the API token “{d['token']}”.",
    "api.token_create": lambda d: f"Made the API token “{d['token']}” ({d['scopes']}).",
    "api.token_revoke": lambda d: f"Revoked the API token “{d['token']}”.",
    "vpp.notifications_configured": lambda d: (
        f"Pointed Apple's notifications at {d.get('url')}"
        f"{' (was ' + d['previous_url'] + ')' if d.get('previous_url') else ''}."
    ),
}


def _summary(action: str, details: dict) -> str:
    """The event as a sentence ("Changed the automatic sync: daily at 03:00:00 → 02:30:00."); an
    action without a sentence of its own reads ``key value, ...``."""
    sentence = SENTENCES.get(action)
    try:
        text = sentence(details) if sentence else _changes(details)
    except (KeyError, TypeError, ValueError):
        text = _changes(details)
    return text[:500]


def audit_record(
    *,
    actor,
    action: str,
    details: dict | None = None,
    count: int = 0,
    outcome: str = "",
    ip: str | None = None,
    job=None,
) -> None:
    """``actor`` is the admin (None or an anonymous user: recorded as "system"); ``details``
    become the event's target_summary as a sentence (``SENTENCES``, at most 500 characters)."""
    details = details or {}
    actor = actor if getattr(actor, "pk", None) else None
    summary = _summary(action, details)
    logger.info("audit action=%s actor=%s %s", action, getattr(actor, "pk", None), summary)
    AuditEvent.objects.create(
        actor=actor,
        actor_name=actor.get_username() if actor else "system",
        action=action[:32],
        target_summary=summary,
        count=count,
        outcome=outcome[:200],
        ip=ip,
        job=job,
    )


# What each action is called in Setting › Audit log (an unknown code reads as itself).
ACTION_LABELS = {
    "vpp.person.invitation_link_shown": "Invitation link shown (helpdesk, person page)",
    "vpp.unit_changed": "Organizational unit changed",
    "vpp.sync_started": "Full sync started",
    "vpp.sync_finished": "Full sync finished",
    "vpp.schedule_changed": "Automatic sync changed",
    "vpp.invitation_changed": "Invitation settings changed",
    "vpp.token_uploaded": "Content token uploaded",
    "vpp.token_replaced": "Content token replaced",
    "vpp.token_removed": "Content token removed",
    "vpp.location_taken_over": "Location taken over",
    "vpp.assignment_changed": "Assignment method changed",
    "vpp.notifications_configured": "Apple notifications set up",
    "vpp.alert_sent": "Alert sent",
    "accounts.admin_added": "Administrator added",
    "accounts.role_changed": "Administrator's role changed",
    "accounts.admin_deactivated": "Administrator deactivated",
    "accounts.admin_reactivated": "Administrator reactivated",
    "vpp.alerts_changed": "Alert settings changed",
    "vpp.lifecycle_changed": "Linking and reminders changed",
    "api.call": "API call",
    "api.token_create": "API token made",
    "api.token_revoke": "API token revoked",
    "api.webhook_create": "Webhook endpoint added",
    "api.webhook_delete": "Webhook endpoint removed",
    "api.enrolment_issue": "Agent enrolment secret issued",
    "api.enrolment_revoke": "Agent enrolment secret revoked",
}


def audit_action_label(action: str) -> str:
    """The readable name of an audit ``action`` code ("vpp.token_uploaded" → "Content token uploaded";
    a job's "vpp.invite" → "Send VPP invitation", "vpp.invite.finished" → "Send VPP invitation: job finished",
    named by ``JobAction``'s labels)."""
    from vpp.models import JobAction

    code, _, finished = action.removeprefix("vpp.").partition(".")
    if code in JobAction.values and finished in ("", "finished"):
        label = str(JobAction(code).label)
        return f"{label}: job finished" if finished else label
    return ACTION_LABELS.get(action) or action.removeprefix("vpp.").replace("_", " ").replace(".", " ").capitalize()
