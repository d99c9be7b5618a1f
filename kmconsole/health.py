"""Is background work possible right now? Used by /readyz and by anything that enqueues."""

from __future__ import annotations

import os
from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class BrokerStatus:
    ok: bool
    detail: str = ""


def broker_status() -> BrokerStatus:
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        folder = settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"]
        ok = os.path.isdir(folder) and os.access(folder, os.W_OK)
        return BrokerStatus(ok, "" if ok else f"queue folder {folder} is not writable")
    import redis

    try:
        client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=2, socket_connect_timeout=2)
        client.ping()
        return BrokerStatus(True)
    except redis.RedisError as exc:
        return BrokerStatus(False, f"Redis is unreachable ({exc.__class__.__name__})")
