"""Full and delta VPP sync against a sandbox holding many Apple users; prints time and peak memory.

    .venv/bin/python bench/sync.py [--users 100000] [--changed 0.01] [--page-size 500]

Targets (issue 5): full sync within 1.5x of the paging floor (pages / 15 requests per second),
peak worker memory under 300 MB, delta with 1% changed under 5 s.

The sandbox runs as its own process, seeded through its state file (creating 100,000 users
through the API would take minutes). The console side uses a fresh SQLite database under a
temporary KMCONSOLE_VAR_DIR (or DATABASE_URL if set) with one VppUser per Apple user; each
sync runs in a child process ("the worker") whose peak RSS is read with os.wait4.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
LOCATION = "bench-location"


def _env(var_dir: str) -> dict[str, str]:
    from cryptography.fernet import Fernet

    env = dict(os.environ)
    env.setdefault("SECRET_KEY", "bench-only-secret-key-0123456789-0123456789-0123456789")
    env.setdefault("KMCONSOLE_ENCRYPTION_KEYS", Fernet.generate_key().decode())
    env.setdefault("KMCONSOLE_VAR_DIR", var_dir)
    env.setdefault("DEBUG", "0")
    env.setdefault("VPP_EVENT_POLL_INTERVAL", "1")
    env["PYTHONPATH"] = str(ROOT)
    return env


def seed_state(path: Path, users: int) -> list[tuple[str, str]]:
    from vpp.sandbox.store import SCHEMA, new_location

    loc = new_location(LOCATION, "Bench Org")
    ids = []
    for n in range(users):
        cuid, code = str(uuid.uuid4()), uuid.uuid4().hex
        ids.append((cuid, code))
        loc["users"].append(
            {
                "recordId": n + 1,
                "clientUserId": cuid,
                "email": f"user{n}@example.com",
                "status": "Registered",
                "inviteCode": code,
                "idHash": None,
                "managedAppleId": None,
                "createdAt": time.time(),
                "versionId": n + 2,
            }
        )
    loc["nextRecord"], loc["versionId"] = users + 1, users + 2
    path.write_text(json.dumps({"schema": SCHEMA, "locations": {LOCATION: loc}}, separators=(",", ":")))
    return ids


def change_share(path: Path, share: float) -> int:
    """1% of the users accepted their invitation since the last sync (new versionIds)."""
    data = json.loads(path.read_text())
    loc = data["locations"][LOCATION]
    step = max(1, round(1 / share))
    changed = 0
    for record in loc["users"][::step]:
        loc["versionId"] += 1
        record.update(status="Associated", idHash=uuid.uuid4().hex, versionId=loc["versionId"])
        changed += 1
    path.write_text(json.dumps(data, separators=(",", ":")))
    return changed


def run_child(env: dict[str, str], *args: str) -> tuple[float, float, str]:
    """(seconds, peak RSS in MB, stdout) of ``bench/sync.py --child ...``."""
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
    elif command == "sync":
        if os.environ.get("BENCH_PROFILE"):
            import cProfile
            import pstats

            profile = cProfile.Profile()
            profile.runcall(_child_sync, *rest)
            pstats.Stats(profile, stream=sys.stderr).sort_stats("cumulative").print_stats(25)
        else:
            _child_sync(*rest)


def _child_setup(ids_path: str, token: str, base_url: str) -> None:
    from django.core.management import call_command

    from users.models import User
    from vpp import secrets
    from vpp.models import TokenHealth, VppServerSetting, VppUser, VppUserStatus

    call_command("migrate", verbosity=0)
    ids = json.loads(Path(ids_path).read_text())
    batch = 5000
    for start in range(0, len(ids), batch):
        chunk = ids[start : start + batch]
        users = User.objects.bulk_create(
            [
                User(
                    display_name=f"User {start + i}", login_id=f"user{start + i}", email=f"user{start + i}@example.com"
                )
                for i in range(len(chunk))
            ]
        )
        # invite_code left blank: the first full sync writes every row (the worst case).
        pairs = zip(users, chunk, strict=True)
        VppUser.objects.bulk_create(
            [
                VppUser(user=u, client_user_id=uuid.UUID(cuid), status=VppUserStatus.INVITED, apple_email=u.email)
                for u, (cuid, _code) in pairs
            ]
        )
    setting = VppServerSetting.load()
    setting.content_token_encrypted = secrets.encrypt(token)
    setting.api_base_url, setting.token_health = base_url, TokenHealth.VALID
    setting.save()


def _child_sync(base_url: str) -> None:
    from vpp.jobs import engine
    from vpp.models import Job, VppServerSetting
    from vpp.services import sync

    VppServerSetting.objects.filter(pk=1).update(api_base_url=base_url)
    sync.job_enqueue = lambda *, job_id: True  # this process is the worker
    started = sync.sync_start(actor=None, trigger="manual")
    queue = engine.job_dispatch(job_id=started.job.pk)
    while queue:  # the worker's loop, in-process: each chunk, then the next phase
        phase, chunk = queue.pop(0)
        if engine.job_process_chunk(job_id=started.job.pk, phase=phase, chunk=chunk):
            queue += engine.job_dispatch(job_id=started.job.pk)
    job = Job.objects.get(pk=started.job.pk)
    run = job.sync_run
    print(json.dumps({"status": job.status, "full": run.full, "counts": run.counts}))


# --- parent ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--changed", type=float, default=0.01)
    parser.add_argument("--page-size", type=int, default=500)
    parser.add_argument("--child", nargs="+")
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    from kmconsole.private_redis import PrivateRedis

    with tempfile.TemporaryDirectory(prefix="kmconsole-bench-") as tmp:
        env = _env(tmp)
        # Without REDIS_URL the worker's settings point at the private Redis of its var dir, as in `make run`.
        private_redis = None if os.environ.get("REDIS_URL") else PrivateRedis(Path(env["KMCONSOLE_VAR_DIR"])).start()
        try:
            _run(args, env, tmp)
        finally:
            if private_redis:
                private_redis.stop()


def _run(args: argparse.Namespace, env: dict[str, str], tmp: str) -> None:
    from vpp.sandbox.testing import start_process_sandbox
    from vpp.sandbox.tokens import mint_token

    state, ids_path = Path(tmp) / "sandbox.json", Path(tmp) / "ids.json"
    started = time.monotonic()
    ids = seed_state(state, args.users)
    ids_path.write_text(json.dumps(ids))
    token = mint_token(org="Bench Org", location=LOCATION)
    options = {"pending_seconds": 0.0, "page_size": args.page_size}
    sandbox = start_process_sandbox(state_path=str(state), **options)
    try:
        run_child(env, "setup", str(ids_path), token, sandbox.base_url)
        print(f"setup: {args.users} Apple users and VppUsers in {time.monotonic() - started:.1f} s")
        pages = math.ceil(args.users / args.page_size)
        floor = pages / 15
        seconds, rss, out = run_child(env, "sync", sandbox.base_url)
        print(
            f"full sync : {seconds:6.1f} s  peak worker RSS {rss:6.0f} MB  ({pages} pages; paging floor at "
            f"15 req/s {floor:.1f} s, ratio {seconds / floor:.2f})  {out}"
        )
    finally:
        sandbox.stop()
    changed = change_share(state, args.changed)
    sandbox = start_process_sandbox(state_path=str(state), **options)
    try:
        seconds, rss, out = run_child(env, "sync", sandbox.base_url)
        print(f"delta sync: {seconds:6.1f} s  peak worker RSS {rss:6.0f} MB  ({changed} changed at Apple)  {out}")
    finally:
        sandbox.stop()


if __name__ == "__main__":
    main()
