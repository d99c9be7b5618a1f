"""Is background work possible right now? Used by /readyz and by anything that enqueues."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class BrokerStatus:
    ok: bool
    detail: str = ""


def broker_status() -> BrokerStatus:
    """Does Redis (settings.REDIS_URL: the broker, and the private one in the embedded default) answer?"""
    import redis

    try:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
        client.ping()
        return BrokerStatus(True)
    except redis.RedisError as exc:
        return BrokerStatus(False, f"Redis is unreachable ({exc.__class__.__name__})")
