"""Invite 10,000 users through the real worker against the sandbox; time it against Apple's floor.

    .venv/bin/python bench/bulk_invite.py [--users 10000] [--concurrency 4] [--redis-url redis://127.0.0.1:6379/N]
    .venv/bin/python bench/bulk_invite.py --managed-share 0.5 ...   # half the users have a Managed Apple Account

Everything runs as separate processes like a deployment: the sandbox (maxRequestPerSecond 15,
maxUsers 100, enforced: more than 15 req/s gets 429; no added latency; events finish at once),
a Celery worker, and a gunicorn web server. A fresh SQLite database (or --database-url) and a
fresh outbox live in a temporary directory. Without a Redis URL the embedded default's private
Redis (kmconsole/private_redis.py) is started in that directory, as `make run` does.

Printed: the job's wall time next to the floor Apple's limits allow — the requests the job
cannot avoid (one create per maxUsers users, one status read per create, the user listing
pages that carry the invite codes, the versionId read) divided by maxRequestPerSecond — and
the Users page and job panel latencies (p50/p95) measured over HTTP while the job runs.

``--managed-share`` gives that share of the users a Managed Apple Account of the sandbox's
organisation (every other user): they are linked silently (created with ``managedAppleId``,
Associated at once, no email), the rest are invited. The floor is the same (the same creates,
status reads and listing pages); the email work shrinks.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RPS, MAX_USERS, PAGE_SIZE = 15, 100, 500


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def configure_env(args, tmp: Path) -> None:
    from cryptography.fernet import Fernet

    os.environ.update(
        DEBUG="0",
        HTTPS="0",
        STATIC_MANIFEST="0",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SECRET_KEY="bench-only-secret-key-0123456789-0123456789-0123456789",
        KMCONSOLE_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        KMCONSOLE_VAR_DIR=str(tmp),
        DATABASE_URL=args.database_url or f"sqlite:///{tmp / 'bench.sqlite3'}",
        EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend",
        EMAIL_FILE_PATH=str(tmp / "outbox"),
        VPP_EVENT_POLL_INTERVAL="1",
        LOG_LEVEL="WARNING",
        DJANGO_SETTINGS_MODULE="kmconsole.settings",
    )
    if args.redis_url:
        os.environ["REDIS_URL"] = args.redis_url
    else:
        os.environ.pop("REDIS_URL", None)


def seed(n: int, managed_share: float = 0.0) -> None:
    from django.contrib.auth.models import User as Admin

    from users.models import ActivationState, Device, Platform, User

    every = round(1 / managed_share) if managed_share else 0  # 0.5 → every second user

    def account(i: int) -> str:
        return f"bench{i}@corp.example" if every and i % every == 0 else ""  # the sandbox organisation's domain

    users = User.objects.bulk_create(
        [
            User(
                display_name=f"Bench {i:05d}",
                login_id=f"bench{i}",
                email=f"bench{i}@example.com",
                managed_apple_account=account(i),
            )
            for i in range(n)
        ],
        batch_size=2000,
    )
    Device.objects.bulk_create(
        [
            Device(user=u, platform=Platform.IOS, activation_state=ActivationState.ACTIVATED, serial_number=f"B{u.pk}")
            for u in users
        ],
        batch_size=2000,
    )
    from users.services import user_device_summary_refresh

    user_device_summary_refresh()  # bulk writes skip the signals that keep the summary columns
    Admin.objects.create_superuser("bench", "bench@example.com", "bench-password-1")


def start(command: list[str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


class Prober(threading.Thread):
    """Fetches the Users page and the job panel in turn, recording each response time."""

    def __init__(self, base: str, job_id: int):
        super().__init__(daemon=True)
        import requests

        self.session = requests.Session()
        login = self.session.get(f"{base}/login/", timeout=10)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
        self.session.post(
            f"{base}/login/",
            data={"username": "bench", "password": "bench-password-1", "csrfmiddlewaretoken": token},
            timeout=10,
        )
        self.urls = {"users page": f"{base}/users/", "job panel": f"{base}/vpp/jobs/{job_id}/panel/"}
        self.times: dict[str, list[float]] = {name: [] for name in self.urls}
        self.errors = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            for name, url in self.urls.items():
                started = time.perf_counter()
                response = self.session.get(url, timeout=10, headers={"HX-Request": "true"} if "panel" in name else {})
                self.times[name].append(time.perf_counter() - started)
                self.errors += response.status_code not in (200, 286)
            time.sleep(0.25)


def wait_ready(app, port: int, timeout: float = 60) -> None:
    """Until the worker answers a ping and the web server answers /healthz."""
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if app.control.ping(timeout=0.5) and requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok:
                return
        except Exception:  # noqa: BLE001 - still starting
            pass
        time.sleep(0.3)
    raise SystemExit("worker or web server did not start")


def cpu_seconds(pgid: int, *, pid: int | None = None) -> float:
    """User+system CPU of every live process in a process group, or of one pid (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if (int(stat.parent.name) == pid) if pid else (int(fields[2]) == pgid):  # fields: state ppid pgrp ...
            total += int(fields[11]) + int(fields[12])  # utime stime
    return total / ticks


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)] * 1000


def write_timeline(path: Path, requests: list[dict], started_epoch: float) -> None:
    """The sandbox's request log relative to job creation, plus the longest gaps between requests."""
    times = sorted(r["t"] for r in requests)
    with open(path, "w") as out:
        for r in sorted(requests, key=lambda r: r["t"]):
            out.write(f"{r['t'] - started_epoch:.3f}\t{r['method']}\t{r['path']}\t{r['status']}\n")
    gaps = sorted(((b - a, a - started_epoch) for a, b in itertools.pairwise(times)), reverse=True)[:5]
    if times:
        first, last = times[0] - started_epoch, times[-1] - started_epoch
        longest = ", ".join(f"{gap:.2f} s at {at:.1f}" for gap, at in gaps)
        print(f"timeline         first request {first:.2f} s, last {last:.2f} s; longest gaps {longest} → {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", ""))
    parser.add_argument("--database-url", default="")
    parser.add_argument("--chunk-size", type=int, default=500, help="VPP_JOB_CHUNK_SIZE for the worker")
    parser.add_argument(
        "--managed-share",
        type=float,
        default=0.0,
        help="share of users with a Managed Apple Account, linked silently (0 = the classic case; 0.5 = half)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument(
        "--timeline",
        type=Path,
        help="write every sandbox request (seconds after job creation "
        "started, method, path, status) to this TSV file, to see where Apple's budget went idle",
    )
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="kmconsole-bench-"))
    configure_env(args, tmp)
    os.environ["VPP_JOB_CHUNK_SIZE"] = str(args.chunk_size)
    import django

    django.setup()
    from django.core.management import call_command

    from kmconsole.celery import app
    from kmconsole.private_redis import PrivateRedis
    from vpp import secrets
    from vpp.jobs.engine import job_create
    from vpp.jobs.plan import vpp_plan_build
    from vpp.models import Job, JobAction, VppServerSetting
    from vpp.sandbox.testing import start_process_sandbox

    private_redis = None if args.redis_url else PrivateRedis(tmp).start()
    call_command("migrate", verbosity=0)
    load_before = os.getloadavg()[0]
    seed(args.users, args.managed_share)
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(os.environ.get("CELERY_QUEUE", "kmconsole"))

    limits = {"maxUsers": MAX_USERS, "maxRequestPerSecond": RPS, "maxRevokeClientUserIds": 100}
    sandbox = start_process_sandbox(
        limits=limits, rps_limit=RPS, rate_limit_retry_after=1, page_size=PAGE_SIZE, pending_seconds=0.0, latency=0.0
    )
    setting = VppServerSetting.load()
    setting.content_token_encrypted = secrets.encrypt(sandbox.token)
    setting.api_base_url = sandbox.base_url
    setting.save()

    concurrency = args.concurrency
    port = free_port()
    procs = [
        start(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "kmconsole",
                "worker",
                "--pool",
                "prefork",
                "--concurrency",
                str(concurrency),
                "--loglevel",
                "WARNING",
                "--without-gossip",
                "--without-mingle",
                "-n",
                "bench@%h",
            ],
            tmp / "worker.log",
        ),
        start(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "kmconsole.wsgi",
                "-b",
                f"127.0.0.1:{port}",
                "-w",
                "2",
                "--log-level",
                "warning",
            ],
            tmp / "web.log",
        ),
    ]
    try:
        wait_ready(app, port)
        from users.selectors import UserSelection

        selection = UserSelection(all_matching=True)  # every user, as "select all" without a filter
        plan = vpp_plan_build(action=JobAction.INVITE, users=selection.users(), channel="email")
        started, started_epoch = time.monotonic(), time.time()
        job = job_create(plan=plan, actor=None, selection=selection)  # commits → enqueues
        created_in = time.monotonic() - started
        prober = Prober(f"http://127.0.0.1:{port}", job.pk)
        prober.start()
        while not Job.objects.get(pk=job.pk).finished:
            time.sleep(0.2)
        wall = time.monotonic() - started
        prober.done.set()
        prober.join(timeout=10)
        job.refresh_from_db()
        counters = sandbox.counters()
        cpu = {
            "worker": cpu_seconds(procs[0].pid),
            "web": cpu_seconds(procs[1].pid),
            "sandbox": cpu_seconds(0, pid=sandbox.process.pid),
        }

        batches = math.ceil(args.users / MAX_USERS)
        pages = math.ceil(args.users / PAGE_SIZE)
        needed = batches + batches + pages + 1  # creates, one status read each, listing pages, versionId
        floor = needed / RPS
        outbox = sum(1 for _ in (tmp / "outbox").glob("*.log"))
        print(
            f"job #{job.pk}: {job.get_status_display()} — {job.succeeded} succeeded, {job.failed} failed, "
            f"{job.skipped} skipped of {job.total}"
        )
        broker = "redis" if args.redis_url else "private redis"
        print(
            f"wall time        {wall:7.1f} s   (job creation → last item done; worker concurrency {concurrency}, "
            f"chunk {args.chunk_size}, broker {broker})"
        )
        print(
            f"  of which       {created_in:7.1f} s   creating the job and its {args.users} items (the confirm request)"
        )
        print(
            f"Apple floor      {floor:7.1f} s   ({needed} unavoidable requests ÷ {RPS} req/s: {batches} creates, "
            f"{batches} status reads, {pages} listing pages, 1 versionId)"
        )
        print(f"ratio            {wall / floor:7.2f} ×  (target ≤ 1.5×)")
        print(
            f"sandbox          {counters['total_requests']} requests, {counters['users_created']} users created, "
            f"{counters['create_calls']} create calls; email files written: {outbox}"
        )
        rejected = sum(1 for r in counters.get("requests", []) if r.get("status") == 429)
        print(f"429 answers      {rejected}")
        from vpp.models import JobItem

        linked = JobItem.objects.filter(job=job, reason__startswith="Linked silently").count()
        print(
            f"linked silently  {linked} (Managed Apple Account share {args.managed_share:g}); "
            f"invited {job.succeeded - linked}; load average before the run {load_before:.1f}"
        )
        for name, times in prober.times.items():
            if times:
                print(
                    f"{name:<16} p50 {statistics.median(times) * 1000:6.1f} ms   p95 {pct(times, 0.95):6.1f} ms   "
                    f"({len(times)} requests during the job)"
                )
        print(f"web errors       {prober.errors}")
        if args.timeline:
            write_timeline(args.timeline, counters.get("requests", []), started_epoch)
        print(
            f"CPU used         worker {cpu['worker']:.1f} s, web {cpu['web']:.1f} s, sandbox {cpu['sandbox']:.1f} s "
            f"on {os.cpu_count()} cores (load average now {os.getloadavg()[0]:.1f})"
        )
    finally:
        for proc in procs:
            stop(proc)
        sandbox.stop()
        if private_redis:
            private_redis.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp}")


if __name__ == "__main__":
    main()
