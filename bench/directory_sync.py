"""Sync people and devices from an Apple Business sandbox holding many people; prints rows per
second, the paging floor and peak worker memory.

    .venv/bin/python bench/directory_sync.py [--people 100000] [--rpm 600]

Targets (issue 14): the first sync within 1.5x of the API's paging floor at the sandbox's rate
limit (requests needed / requests per minute: token + user pages + device pages, 1,000 per page),
peak worker memory under 300 MB.

The sandbox runs as its own process (``python -m vpp.business_sandbox --requests-per-minute``), so
going faster than its limit would earn 429s. The console side uses a fresh SQLite database under a
temporary KMCONSOLE_VAR_DIR (or DATABASE_URL if set); the dry run and the sync each run in a child
process ("the worker") whose peak RSS is read with os.wait4. A second sync (nothing changed)
shows the steady state.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _env(var_dir: str, rpm: int, redis_url: str) -> dict[str, str]:
    from cryptography.fernet import Fernet

    env = dict(os.environ)
    env.setdefault("SECRET_KEY", "bench-only-secret-key-0123456789-0123456789-0123456789")
    env.setdefault("KMCONSOLE_ENCRYPTION_KEYS", Fernet.generate_key().decode())
    env.setdefault("KMCONSOLE_VAR_DIR", var_dir)
    env.setdefault("DEBUG", "0")
    env["APPLE_BUSINESS_REQUESTS_PER_MINUTE"] = str(rpm)
    env["REDIS_URL"] = redis_url  # the shared limiter and token store
    env["PYTHONPATH"] = str(ROOT)
    return env


def run_child(env: dict[str, str], *args: str) -> tuple[float, float, str]:
    """(seconds, peak RSS in MB, stdout) of ``bench/directory_sync.py --child ...``."""
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, __file__, "--child", *args], env=env, stdout=subprocess.PIPE, text=True)
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.monotonic() - started
    if status != 0:
        raise SystemExit(f"child {args} failed: {out}")
    return elapsed, usage.ru_maxrss / 1024, out.strip()


# --- child side (the "worker") ---------------------------------------------------------------


def child(command: str, *rest: str) -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kmconsole.settings")
    django.setup()
    if command == "setup":
        _child_setup(*rest)
    elif command == "sync" and os.environ.get("BENCH_PROFILE"):
        import cProfile
        import pstats

        profile = cProfile.Profile()
        profile.runcall(_child_sync, *rest)
        pstats.Stats(profile, stream=sys.stderr).sort_stats("cumulative").print_stats(30)
    elif command == "sync":
        _child_sync(*rest)


def _child_setup(account_path: str, root_url: str) -> None:
    from django.core.management import call_command

    from vpp import secrets
    from vpp.models import AppleBusinessSetting

    call_command("migrate", verbosity=0)
    account = json.loads(Path(account_path).read_text())
    setting = AppleBusinessSetting.load()
    setting.client_id, setting.key_id = account["client_id"], account["key_id"]
    setting.private_key_encrypted = secrets.encrypt(account["private_key"])
    setting.api_base_url, setting.token_url = root_url, root_url + "/auth/oauth2/token"
    setting.save()


def _child_sync(mode: str) -> None:
    from vpp.jobs import engine
    from vpp.models import AppleBusinessSetting, Job
    from vpp.services import business

    business.job_enqueue = lambda *, job_id: True  # this process is the worker
    began = time.monotonic()
    started = business.directory_sync_start(actor=None, dry_run=mode == "dry")
    queue = engine.job_dispatch(job_id=started.job.pk)
    while queue:  # the worker's loop, in-process: each phase, then the next
        phase, chunk = queue.pop(0)
        if engine.job_process_chunk(job_id=started.job.pk, phase=phase, chunk=chunk):
            queue += engine.job_dispatch(job_id=started.job.pk)
    job = Job.objects.get(pk=started.job.pk)
    setting = AppleBusinessSetting.load()
    counts = setting.dry_run_counts if mode == "dry" else setting.last_counts
    seconds = time.monotonic() - began
    print(json.dumps({"status": job.status, "error": job.error, "counts": counts, "seconds": seconds}))


# --- parent ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--devices", type=int, help="default: as many as people")
    parser.add_argument("--rpm", type=int, default=600, help="the sandbox's rate limit (requests per minute)")
    parser.add_argument("--redis", default="", help="this Redis (default: a private one, as make run)")
    parser.add_argument("--child", nargs="+")
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    from kmconsole.private_redis import PrivateRedis

    devices = args.people if args.devices is None else args.devices
    with tempfile.TemporaryDirectory(prefix="kmconsole-abm-bench-") as tmp:
        private_redis = PrivateRedis(Path(tmp))
        with contextlib.nullcontext() if args.redis else private_redis:
            bench(args, devices, _env(tmp, args.rpm, args.redis or private_redis.url), tmp)


def bench(args, devices: int, env: dict[str, str], tmp: str) -> None:
    from vpp.business_sandbox.testing import start_process_business_sandbox

    sandbox = start_process_business_sandbox(people=args.people, requests_per_minute=args.rpm)
    try:
        if devices != args.people:
            sandbox.reset(people=args.people, devices=devices)
            sandbox.options(requests_per_minute=args.rpm)
        account_path = Path(tmp) / "account.json"
        account_path.write_text(json.dumps(sandbox.account.__dict__))
        run_child(env, "setup", str(account_path), sandbox.root_url)
        requests = 1 + math.ceil(args.people / 1000) + math.ceil(devices / 1000)
        floor = requests / (args.rpm / 60)
        print(f"{args.people} people, {devices} devices; sandbox limit {args.rpm} requests/minute;"
              f" {requests} requests -> paging floor {floor:.1f} s")  # fmt: skip
        for label, mode in (("dry run", "dry"), ("first sync", "real"), ("second sync", "real")):
            seconds, rss, out = run_child(env, "sync", mode)
            counts = json.loads(out)["counts"]
            print(
                f"{label:11}: {seconds:6.1f} s  {args.people / seconds:7.0f} people/s  ratio to floor "
                f"{seconds / floor:.2f}  peak worker RSS {rss:4.0f} MB  created {counts.get('created', 0)}"
                f" updated {counts.get('updated', 0)} unchanged {counts.get('unchanged', 0)}"
                f" devices {counts.get('devices', 0)}  429s so far {sandbox.counters().get('rate_limited', 0)}"
            )
    finally:
        sandbox.stop()


if __name__ == "__main__":
    main()
