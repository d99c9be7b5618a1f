"""A child process for the cross-process rate-limit test: N requests through a Redis-shared limiter.

python -m tests.support.hammer BASE_URL TOKEN REDIS_URL PREFIX COUNT WINDOW
"""

from __future__ import annotations

import sys

import redis

from vpp.apple.client import VppClient
from vpp.apple.ratelimit import RedisRateLimiter


def main(base_url: str, token: str, redis_url: str, prefix: str, count: str, window: str) -> None:
    limiter = RedisRateLimiter(redis.Redis.from_url(redis_url), window=float(window), prefix=prefix)
    client = VppClient(token, base_url=base_url, rate_limiter=limiter)
    for _ in range(int(count)):
        client.client_config()
    print("done")


if __name__ == "__main__":
    main(*sys.argv[1:])
