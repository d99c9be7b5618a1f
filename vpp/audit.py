"""The audit seam of the settings page and the sync.

Writes an ``AuditEvent`` (the jobs part's append-only model) when it exists, and always a
line on the ``kmconsole.audit`` logger. Callers never pass secrets in ``details``.
"""

from __future__ import annotations

import logging

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
    details = details or {}
    actor = actor if getattr(actor, "pk", None) else None
    logger.info("audit action=%s actor=%s %s", action, getattr(actor, "pk", None), _summary(details))
    try:
        from vpp.models import AuditEvent
    except ImportError:  # the jobs part's model has not landed in this checkout
        return
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
