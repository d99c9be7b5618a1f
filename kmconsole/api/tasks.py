"""Webhook delivery tasks: job-independent, retried with backoff (kmconsole/api/webhooks.py)."""

from __future__ import annotations

from celery import shared_task

from kmconsole.api import webhooks


@shared_task(name=webhooks.DELIVER_TASK, bind=True, acks_late=True, max_retries=None)
def webhook_deliver(self, delivery_id: int) -> None:
    """POST one delivery; on failure, again after ``webhooks.backoff_seconds`` (at most MAX_ATTEMPTS)."""
    wait = webhooks.deliver(delivery_id)
    if wait is not None:
        raise self.retry(countdown=wait)


@shared_task(name="api.webhooks_sweep")
def webhooks_sweep() -> None:
    """Re-enqueue deliveries a broker outage or a restart lost (beat, every minute)."""
    webhooks.webhooks_sweep()
