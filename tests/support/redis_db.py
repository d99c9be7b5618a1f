"""A Redis for limiter tests: REDIS_URL if set, else the local default; skipped when unreachable."""

from __future__ import annotations

import os
import uuid

import pytest


def redis_url() -> str:
    return os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/2"


def redis_or_skip():
    import redis

    client = redis.Redis.from_url(redis_url(), socket_connect_timeout=1, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis not reachable at {redis_url()}: {exc}")
    return client


def unique_prefix() -> str:
    return f"kmconsole-test:{uuid.uuid4().hex[:12]}"


def delete_prefix(client, prefix: str) -> None:
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)
