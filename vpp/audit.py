"""The audit trail of the settings page and the sync: an ``AuditEvent`` row (append-only,
vpp/models/audit.py) and a line on the ``kmconsole.audit`` logger for each action.
Callers never pass secrets in ``details``.
"""

from __future__ import annotations

import logging

from vpp.models import AuditEvent

logger = logging.getLogger("kmconsole.audit")


def _summary(details: dict) -> str:
    return "; ".join(f"{key}={value}" for key, value in details.items())[:500]


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
    become the event's target_summary as ``key=value; ...`` (at most 500 characters)."""
    details = details or {}
    actor = actor if getattr(actor, "pk", None) else None
    logger.info("audit action=%s actor=%s %s", action, getattr(actor, "pk", None), _summary(details))
    AuditEvent.objects.create(
        actor=actor,
        actor_name=actor.get_username() if actor else "system",
        action=action[:32],
        target_summary=_summary(details),
        count=count,
        outcome=outcome[:200],
        ip=ip,
        job=job,
    )
