"""Events other parts of kmconsole may listen to (the API's webhooks do: kmconsole/api/webhooks.py).

``vpp_event`` is sent with ``event_type`` and ``data`` (JSON-able) after the change commits:
- "job.finished": {"job_id", "action", "status", "succeeded", "failed", "skipped"}
- "token.health_changed": {"health", "previous", "detail"}
- "user.associated" / "user.retired": {"client_user_id", "user_id"}
- "invitation.sent": {"client_user_id", "user_id", "channel", "job_id"}
vpp never imports the listeners.
"""

from __future__ import annotations

from django.db import transaction
from django.dispatch import Signal

vpp_event = Signal()


def vpp_event_after_commit(event_type: str, data: dict) -> None:
    """Send ``vpp_event`` once the current transaction commits (at once outside one). A listener
    that fails is logged and never fails the sender (robust: a job is never held up by a webhook)."""
    transaction.on_commit(lambda: vpp_event.send_robust(sender=None, event_type=event_type, data=data), robust=True)
