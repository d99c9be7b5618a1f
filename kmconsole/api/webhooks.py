"""Webhooks: signed events POSTed to the HTTPS endpoints admins register (docs/api.md#webhooks).

Event sources in vpp send ``vpp.signals.vpp_event`` (after their transaction commits); each
event becomes one ``WebhookDelivery`` per endpoint that wants it, delivered by the Celery task
``api.webhook_deliver`` with retries and backoff. Nothing here runs inside a job's work: a slow
or dead receiver never holds a job up.

Signature (verify it, docs/api.md#verifying-a-webhook): header ``Kmconsole-Signature:
t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>" under the endpoint's secret>``,
plus ``Kmconsole-Event-Id`` (a UUID, the same on every retry) and ``Kmconsole-Event``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
import uuid
from datetime import timedelta
from urllib.parse import urlsplit

import requests
from celery import current_app
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from kmconsole.api.models import WebhookDelivery, WebhookEndpoint
from vpp import secrets as vpp_secrets

logger = logging.getLogger(__name__)

EVENT_TYPES = {
    "invitation.sent": "An invitation went out to a user (email or push)",
    "user.associated": "A user accepted the invitation (associated with an Apple Account)",
    "user.retired": "A user was retired from VPP",
    "job.finished": "A job finished (done, failed or cancelled)",
    "token.health_changed": "The content token's health changed",
    "ping": "The console's “Send test” button",
}
DELIVER_TASK = "api.webhook_deliver"
MAX_ATTEMPTS = 8
TIMEOUT = 10  # seconds per POST
SIGNATURE_TOLERANCE = 300  # seconds a receiver should accept between t and its clock


def backoff_seconds(attempts: int) -> int:
    """Wait before attempt ``attempts + 1``: 30 s, 1, 2, 4 … min, at most 6 hours."""
    return min(30 * 2 ** max(0, attempts - 1), 6 * 3600)


def url_problem(url: str) -> str:
    """Why ``url`` cannot be an endpoint ("" when it can): HTTPS only (plain HTTP to loopback when
    settings.WEBHOOK_ALLOW_HTTP_LOOPBACK, for local receivers and the tests)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return ""
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if parts.scheme == "http" and loopback and getattr(settings, "WEBHOOK_ALLOW_HTTP_LOOPBACK", False):
        return ""
    return "The endpoint must be an https:// URL."


def endpoint_create(*, url: str, description: str = "", events: list[str] | None = None, admin=None):
    """A new endpoint and its signing secret (shown once to the admin; stored encrypted).

    Raises ValueError with a sentence for a URL that is not HTTPS or an unknown event type."""
    problem = url_problem(url)
    unknown = [e for e in events or [] if e not in EVENT_TYPES]
    if problem or unknown:
        raise ValueError(problem or f"Unknown event types: {', '.join(unknown)}")
    secret = "whsec_" + secrets.token_urlsafe(32)
    endpoint = WebhookEndpoint.objects.create(
        url=url,
        description=description,
        events=events or [],
        created_by=admin,
        secret_encrypted=vpp_secrets.encrypt(secret),
    )
    return endpoint, secret


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``Kmconsole-Signature`` header value for ``body`` sent at ``timestamp`` (unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, body: bytes, header: str, *, now: float | None = None) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` within SIGNATURE_TOLERANCE seconds (what
    a receiver does; docs/api.md has the same in a dozen lines)."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
    except (ValueError, KeyError):
        return False
    if abs((now or time.time()) - timestamp) > SIGNATURE_TOLERANCE:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))


def event_emit(event_type: str, data: dict, *, endpoints=None) -> list[WebhookDelivery]:
    """One delivery per endpoint that wants ``event_type``, enqueued after the transaction commits."""
    event_id = uuid.uuid4()
    payload = {"id": str(event_id), "type": event_type, "created_at": timezone.now().isoformat(), "data": data}
    targets = endpoints if endpoints is not None else WebhookEndpoint.objects.filter(is_active=True)
    deliveries = [
        WebhookDelivery.objects.create(endpoint=ep, event_id=event_id, event_type=event_type, payload=payload)
        for ep in targets
        if ep.wants(event_type) or endpoints is not None
    ]
    for delivery in deliveries:
        transaction.on_commit(lambda pk=delivery.pk: _enqueue(pk))
    return deliveries


def _enqueue(delivery_id: int, countdown: int = 0) -> None:
    try:
        current_app.send_task(DELIVER_TASK, args=[delivery_id], countdown=countdown)
    except Exception:  # the broker is down: webhooks_sweep picks the delivery up later
        logger.warning("webhook delivery %s not enqueued", delivery_id, exc_info=True)


def deliver(delivery_id: int) -> int | None:
    """POST the delivery once. Returns the seconds to wait before the next attempt, or None when
    it is settled (delivered, given up after MAX_ATTEMPTS, or gone)."""
    delivery = WebhookDelivery.objects.select_related("endpoint").filter(pk=delivery_id).first()
    if delivery is None or delivery.state != WebhookDelivery.State.PENDING:
        return None
    body = json.dumps(delivery.payload, separators=(",", ":")).encode()
    secret = vpp_secrets.decrypt(delivery.endpoint.secret_encrypted)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "kmconsole-webhooks/1",
        "Kmconsole-Event-Id": str(delivery.event_id),
        "Kmconsole-Event": delivery.event_type,
        "Kmconsole-Signature": sign(secret, body, int(time.time())),
    }
    started = time.monotonic()
    status, error = None, ""
    try:
        response = requests.post(
            delivery.endpoint.url, data=body, headers=headers, timeout=TIMEOUT, allow_redirects=False
        )
        status = response.status_code
        if not 200 <= status < 300:
            error = f"HTTP {status}"
    except requests.RequestException as exc:
        error = f"{type(exc).__name__}: {exc}"[:300]
    attempts = delivery.attempts + 1
    fields = {
        "attempts": attempts,
        "last_status_code": status,
        "last_error": error,
        "response_ms": round((time.monotonic() - started) * 1000),
    }
    wait = None
    if not error:
        fields.update(state=WebhookDelivery.State.DELIVERED, delivered_at=timezone.now(), next_retry_at=None)
    elif attempts >= MAX_ATTEMPTS:
        fields.update(state=WebhookDelivery.State.FAILED, next_retry_at=None)
    else:
        wait = backoff_seconds(attempts)
        fields["next_retry_at"] = timezone.now() + timedelta(seconds=wait)
    WebhookDelivery.objects.filter(pk=delivery.pk, state=WebhookDelivery.State.PENDING).update(**fields)
    return wait


def webhooks_sweep() -> list[int]:
    """Enqueue pending deliveries whose retry time has passed by a minute (lost to a broker outage
    or a worker restart). Returns their ids."""
    late = timezone.now() - timedelta(seconds=60)
    ids = list(
        WebhookDelivery.objects.filter(state=WebhookDelivery.State.PENDING)
        .filter(next_retry_at__lt=late)
        .values_list("pk", flat=True)[:500]
    )
    ids += list(
        WebhookDelivery.objects.filter(
            state=WebhookDelivery.State.PENDING, next_retry_at__isnull=True, attempts=0, created_at__lt=late
        ).values_list("pk", flat=True)[:500]
    )
    for pk in ids:
        _enqueue(pk)
    return ids


def _on_vpp_event(sender, event_type: str, data: dict, **kwargs) -> None:
    if event_type in EVENT_TYPES:
        event_emit(event_type, data)


def connect_event_sources() -> None:
    """Listen to the vpp event signal (called from ApiConfig.ready())."""
    from vpp.signals import vpp_event

    vpp_event.connect(_on_vpp_event, dispatch_uid="kmconsole.api.webhooks")
