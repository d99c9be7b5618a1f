"""The suite's Redis (tests/redis_session.py starts one when REDIS_URL is unset) for tests that use it directly."""

from __future__ import annotations

import uuid


def redis_url() -> str:
    from django.conf import settings

    return settings.REDIS_URL


def redis_client():
    """A client on the suite's Redis (it always runs: see the module docstring)."""
    import redis

    return redis.Redis.from_url(redis_url(), socket_connect_timeout=5, socket_timeout=5)


def rate_limiter(**kwargs):
    """A RedisRateLimiter of its own (a fresh key prefix) on the suite's Redis; keys expire by themselves."""
    from vpp.apple.ratelimit import RedisRateLimiter

    return RedisRateLimiter(redis_client(), prefix=unique_prefix(), **kwargs)


def unique_prefix() -> str:
    return f"kmconsole-test:{uuid.uuid4().hex[:12]}"


def delete_prefix(client, prefix: str) -> None:
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)
