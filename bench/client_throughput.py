"""How close does VppClient get to Apple's request-rate ceiling? (issue 3)

Starts the sandbox in its own process with maxRequestPerSecond R (default 15, enforced by the
sandbox too: it answers 429 beyond it), then measures with one VppClient:

* create: create_users() of N users with maxUsers M  -> N/M requests; ceiling = R x M users/s
* list:   iter_users() over the same N users with page size P -> N/P requests; ceiling = R x P users/s

Apple's limit is a rate, so the first second's burst of R requests would flatter a short run.
Each measurement therefore starts with the limiter's window already full (R cheap GETs
just before), i.e. in the steady state a busy console runs in.

    .venv/bin/python bench/client_throughput.py [--users 3000] [--rps 15] [--max-users 100]
                                                [--page-size 100] [--redis redis://127.0.0.1:6379/2]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kmconsole.private_redis import PrivateRedis
from vpp.apple.client import VppClient
from vpp.apple.ratelimit import RedisRateLimiter
from vpp.apple.types import RequestUser
from vpp.sandbox.testing import start_sandbox


def fill_window(client: VppClient, rps: int) -> None:
    for _ in range(rps):
        client.client_config()


def measure(label: str, users: int, requests: int, seconds: float, ceiling: float, status_counts: dict) -> float:
    rate = users / seconds
    share = 100 * rate / ceiling
    print(
        f"{label:<7} {users:>6} users in {requests:>3} requests, {seconds:6.2f} s: "
        f"{rate:8.0f} users/s   ceiling {ceiling:6.0f} users/s   {share:5.1f}% of ceiling   "
        f"(sandbox answers: {status_counts})"
    )
    return share


def statuses(sandbox, path: str, since: float) -> dict:
    counts: dict = {}
    for r in sandbox.counters()["requests"]:
        if r["path"] == path and r["t"] >= since:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--rps", type=int, default=15)
    parser.add_argument("--max-users", type=int, default=100)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--redis", default="", help="this Redis for the limiter (default: a private one, as make run)")
    args = parser.parse_args()

    options = {
        "limits": {"maxRequestPerSecond": args.rps, "maxUsers": args.max_users},
        "rps_limit": args.rps,
        "page_size": args.page_size,
        "pending_seconds": 0.0,
    }
    # Without --redis: a private Redis in a temporary directory, as `make run` starts under var/.
    private_redis = PrivateRedis(Path(tempfile.mkdtemp(prefix="kmconsole-bench-")))
    redis_server = contextlib.nullcontext() if args.redis else private_redis
    with start_sandbox(subprocess=True, **options) as sandbox, redis_server:
        prefix = f"kmconsole-bench:{uuid.uuid4().hex}"
        limiter = RedisRateLimiter.from_url(args.redis or private_redis.url, prefix=prefix)
        client = VppClient(sandbox.token, base_url=sandbox.base_url, rate_limiter=limiter)
        print(f"sandbox {sandbox.base_url}, maxRequestPerSecond {args.rps}, limiter {type(limiter).__name__}")
        users = [RequestUser(f"bench-{i:06d}", email=f"user{i}@example.org") for i in range(args.users)]

        fill_window(client, args.rps)
        started = time.monotonic()
        wall = time.time()
        events = client.create_users(users)
        create_seconds = time.monotonic() - started
        create_share = measure(
            "create",
            args.users,
            len(events),
            create_seconds,
            args.rps * args.max_users,
            statuses(sandbox, "/mdm/v2/users/create", wall),
        )
        for event in events:
            client.wait_for_event(event, poll_interval=0.05, timeout=60)

        fill_window(client, args.rps)
        started = time.monotonic()
        wall = time.time()
        listing = client.iter_users()
        pages = 0
        listed = 0
        for page in listing.pages():
            pages += 1
            listed += len(page.users)
        list_seconds = time.monotonic() - started
        list_share = measure(
            "list", listed, pages, list_seconds, args.rps * args.page_size, statuses(sandbox, "/mdm/v2/users", wall)
        )
        if listed != args.users:
            print(f"WARNING: listed {listed} users, expected {args.users}")
            return 1
    print(f"target >= 90% of ceiling: {'met' if min(create_share, list_share) >= 90 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
