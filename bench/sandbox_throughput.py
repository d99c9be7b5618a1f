"""How many requests per second the VPP sandbox answers on loopback (target: > 100 req/s).

    .venv/bin/python bench/sandbox_throughput.py [--threads 4] [--seconds 3]

Starts a sandbox as its own process (as in `make run`) and hits GET /users and POST /users/create
from several threads with keep-alive sessions; prints the figures.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vpp.sandbox.testing import start_sandbox


def hammer(sandbox, path: str, seconds: float, counts: list[int], index: int) -> None:
    session = requests.Session()
    auth = {"Authorization": f"Bearer {sandbox.token}"}
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        if path == "create":
            body = {"users": [{"clientUserId": f"bench-{index}-{n}"}]}
            response = session.post(sandbox.base_url + "/users/create", json=body, headers=auth, timeout=10)
        else:
            response = session.get(sandbox.base_url + "/users", headers=auth, timeout=10)
        response.raise_for_status()
        n += 1
    counts[index] = n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    with start_sandbox(subprocess=True, pending_seconds=0.0, page_size=100) as sandbox:
        for path in ("list", "create"):
            counts = [0] * args.threads
            threads = [
                threading.Thread(target=hammer, args=(sandbox, path, args.seconds, counts, i))
                for i in range(args.threads)
            ]
            started = time.monotonic()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.monotonic() - started
            print(f"{path:>6}: {sum(counts) / elapsed:7.1f} req/s ({args.threads} threads, {sum(counts)} requests)")


if __name__ == "__main__":
    main()
