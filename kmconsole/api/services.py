"""Writes and checks for the API: tokens, scopes, the per-token rate limit, idempotency keys,
agent enrolment secrets and push-token registration (docs/api.md)."""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import redis
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from kmconsole.api.models import ApiToken, EnrolmentSecret, IdempotencyKey
from users.models import Device

logger = logging.getLogger(__name__)

# What a token may be allowed to do: the Django permissions the console's roles hold and its
# views check (accounts/roles.py, docs/roles.md; vpp/bulk_views.py PERMISSIONS for the bulk
# actions). Creating and changing device users is in no role (they come from the MDM): only a
# superuser can grant it.
SCOPES: dict[str, str] = {
    "users.view_user": "Read device users and devices",
    "users.add_user": "Create device users and devices",
    "users.change_user": "Update and deactivate device users and devices",
    "vpp.view_vppuser": "Read VPP users and their history",
    "vpp.view_job": "Read jobs and their per-user results",
    "vpp.view_vppserversetting": "Read the VPP Server Setting's health",
    "vpp.invite_vppuser": "Start invitation jobs",
    "vpp.delete_vppuser": "Start delete-from-VPP jobs",
    "vpp.sync_vppuser": "Start sync jobs",
}
TOKEN_PREFIX = "kmc_"
ENROLMENT_PREFIX = "kme_"
# Calls per token (or enrolment secret) per RATE_WINDOW seconds; settings.API_RATE_LIMIT overrides.
DEFAULT_RATE_LIMIT = 600
RATE_WINDOW = 60
ENROLMENT_RATE_LIMIT = 10  # an agent app registers its token now and then, never in a loop


class ScopeRefused(Exception):
    """A token was asked for a scope its creator does not hold (``scopes`` names them)."""

    def __init__(self, scopes: list[str]):
        super().__init__(f"Not yours to grant: {', '.join(scopes)}")
        self.scopes = scopes


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def grantable_scopes(admin) -> list[str]:
    """The scopes ``admin`` (a console auth.User) may put on a token: those it holds itself."""
    return [scope for scope in SCOPES if admin.has_perm(scope)]


def token_create(*, admin, name: str, scopes: list[str], expires_at=None) -> tuple[ApiToken, str]:
    """A new token and its secret (returned once; only its SHA-256 is stored).

    Raises ScopeRefused for a scope that is unknown or that ``admin`` does not hold.
    """
    refused = [scope for scope in scopes if scope not in SCOPES or not admin.has_perm(scope)]
    if refused:
        raise ScopeRefused(refused)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        name=name,
        prefix=secret[: len(TOKEN_PREFIX) + 4],
        token_hash=_hash(secret),
        created_by=admin,
        scopes=sorted(set(scopes)),
        expires_at=expires_at,
    )
    return token, secret


def token_revoke(token: ApiToken) -> None:
    """Revoke at once: the next call with it is a 401."""
    ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())


def token_find(secret: str) -> ApiToken | None:
    """The usable (not revoked, not expired) token with this secret, or None."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
        return None
    token = ApiToken.objects.select_related("created_by").filter(token_hash=_hash(secret)).first()
    if token is None or not token.usable or not token.created_by.is_active:
        return None
    return token


def token_touch(token: ApiToken, ip: str | None) -> None:
    """Record the last use (time, address); at most one write a minute per token."""
    now = timezone.now()
    if token.last_used_at and (now - token.last_used_at).total_seconds() < 60 and token.last_used_ip == ip:
        return
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=now, last_used_ip=ip)


def token_allows(token: ApiToken, scope: str) -> bool:
    """A scope counts while the token has it AND its creator still holds the permission
    (a demoted admin's tokens lose what the admin lost)."""
    return scope in token.scopes and token.created_by.has_perm(scope)


# --------------------------------------------------------------------------- rate limit


@cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5)


@dataclass(frozen=True)
class RateVerdict:
    allowed: bool
    retry_after: int  # seconds until the window resets (0 when allowed)


def rate_check(key: str, *, limit: int | None = None) -> RateVerdict:
    """One call against ``key``'s budget: ``limit`` calls per RATE_WINDOW seconds (a fixed window
    in Redis, shared by every web process). Redis unreachable or too slow: the call is allowed
    (logged), never a 500 — the limit guards the console, it is not what authenticates."""
    limit = limit or getattr(settings, "API_RATE_LIMIT", DEFAULT_RATE_LIMIT)
    window = int(time.time() // RATE_WINDOW)
    name = f"kmconsole:api:rate:{key}:{window}"
    try:
        pipe = _redis().pipeline()
        pipe.incr(name)
        pipe.expire(name, RATE_WINDOW * 2)
        count = pipe.execute()[0]
    except redis.RedisError:
        logger.warning("API rate limit not counted for %s: Redis unavailable", key, exc_info=True)
        return RateVerdict(True, 0)
    if count <= limit:
        return RateVerdict(True, 0)
    return RateVerdict(False, max(1, RATE_WINDOW - int(time.time()) % RATE_WINDOW))


# --------------------------------------------------------------------------- idempotency


class IdempotencyMismatch(Exception):
    """The key was used before with another request (method, path or body)."""


def request_fingerprint(method: str, path: str, body: dict) -> str:
    """SHA-256 of the request a key stands for (the JSON body with sorted keys)."""
    return _hash(f"{method} {path}\n{json.dumps(body, sort_keys=True, default=str)}")


def idempotent(
    *, token: ApiToken, key: str, fingerprint: str, work: Callable[[], tuple[int, dict]]
) -> tuple[int, dict, bool]:
    """Run ``work`` (returns (status code, JSON body)) once per (token, key).

    Returns (status, body, replayed). The key row and whatever ``work`` writes (the job) commit
    together, so a concurrent twin waits on the unique index and then replays the stored answer.
    Raises IdempotencyMismatch when the key was used for a different request.
    """
    try:
        with transaction.atomic():
            row = IdempotencyKey.objects.create(token=token, key=key, request_hash=fingerprint)
            status, body = work()
            row.status_code, row.response = status, body
            row.save(update_fields=["status_code", "response"])
            return status, body, False
    except IntegrityError:
        row = IdempotencyKey.objects.filter(token=token, key=key).first()
        if row is None:  # an IntegrityError of the work itself
            raise
    if row.request_hash != fingerprint:
        raise IdempotencyMismatch(key)
    return row.status_code, row.response, True


# --------------------------------------------------------------------------- agent enrolment


def enrolment_secret_issue(*, device: Device, admin) -> tuple[EnrolmentSecret, str]:
    """A new secret for ``device``'s agent app (returned once). Earlier ones stay valid until revoked."""
    secret = ENROLMENT_PREFIX + secrets.token_urlsafe(32)
    row = EnrolmentSecret.objects.create(
        device=device, prefix=secret[: len(ENROLMENT_PREFIX) + 4], secret_hash=_hash(secret), created_by=admin
    )
    return row, secret


def enrolment_secret_revoke(row: EnrolmentSecret) -> None:
    EnrolmentSecret.objects.filter(pk=row.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())


def enrolment_find(secret: str) -> EnrolmentSecret | None:
    """The unrevoked enrolment secret with this value, or None."""
    if not secret.startswith(ENROLMENT_PREFIX) or len(secret) > 200:
        return None
    return (
        EnrolmentSecret.objects.select_related("device")
        .filter(secret_hash=_hash(secret), revoked_at__isnull=True)
        .first()
    )


def push_token_register(*, enrolment: EnrolmentSecret, push_token: str, ip: str | None) -> Device:
    """Store the agent app's APNs device token on its device (replacing the old one; a token
    another device had is taken from it: APNs tokens belong to one app install)."""
    with transaction.atomic():
        Device.objects.filter(push_token=push_token).exclude(pk=enrolment.device_id).update(push_token="")
        device = Device.objects.select_for_update().get(pk=enrolment.device_id)
        device.push_token = push_token
        device.save(update_fields=["push_token", "updated_at"])
        EnrolmentSecret.objects.filter(pk=enrolment.pk).update(last_used_at=timezone.now(), last_used_ip=ip)
    return device
