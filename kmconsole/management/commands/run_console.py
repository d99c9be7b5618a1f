"""manage.py run_console: the embedded default (`make run`) in one command, one Ctrl-C.

Migrates, seeds demo data into an empty database, creates or refreshes the demo admin,
then runs the web server, a Celery worker and Celery beat as child processes. Without
REDIS_URL it first starts the private Redis under var/ (kmconsole/private_redis.py,
docs/embedded.md) and stops it last, once the worker has acknowledged its tasks. Ctrl-C
(SIGINT) or SIGTERM stops them all; if one child dies, the others are stopped and the
command exits non-zero.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse

from kmconsole.private_redis import PrivateRedis, PrivateRedisError
from users.demo import demo_users_create
from users.models import User
from vpp.business_sandbox.demo import BusinessDemo, business_demo_connect, business_demo_plan, business_demo_sync
from vpp.invitations.outbox import outbox_active
from vpp.sandbox.demo import DemoSandbox, demo_claim, demo_connect, demo_sandbox_plan

ADMIN_USERNAME = "admin"
STOP_TIMEOUT = 20  # seconds a child gets to finish after SIGTERM (a worker finishes its task)
READY_TIMEOUT = 30  # seconds a service (the private Redis) gets to answer before the others start


@dataclass(frozen=True)
class Child:
    """A process of the console. A SERVICE (the private Redis) is started first, waited for until
    READY() is true, and stopped only after every other child has exited."""

    name: str
    argv: list[str]
    service: bool = False
    ready: Callable[[], bool] | None = None


def console_children(*, host: str, port: int) -> list[Child]:
    """The processes of the embedded console. Other parts append theirs here (e.g. the sandbox)."""
    python = sys.executable
    manage = str(Path(settings.BASE_DIR) / "manage.py")
    return [
        Child("web", [python, manage, "runserver", "--noreload", f"{host}:{port}"]),
        Child("worker", [python, "-m", "celery", "-A", "kmconsole", "worker", "-n", "worker@%h",
                         "--concurrency", "2", "--loglevel", "INFO"]),
        Child("beat", [python, "-m", "celery", "-A", "kmconsole", "beat", "--loglevel", "INFO",
                       "--schedule", str(Path(settings.VAR_DIR) / "celerybeat-schedule")]),
    ]  # fmt: skip


class Command(BaseCommand):
    help = "Run the whole console (web, Celery worker, Celery beat) on this machine."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--demo-users", type=int, default=500, help="demo users to create in an empty database")

    def handle(self, *args, host: str, port: int, demo_users: int, **options):
        Path(settings.VAR_DIR).mkdir(parents=True, exist_ok=True)
        call_command("migrate", interactive=False, verbosity=0)
        if demo_users and not User.objects.exists():
            result = demo_users_create(count=demo_users)
            self.stdout.write(f"Seeded {result.users} demo device users with {result.devices} devices.")
        password = self._demo_admin()
        sandbox = self._demo_sandbox()
        children = console_children(host=host, port=port)
        if sandbox:
            children.insert(0, Child("sandbox", sandbox.argv))
        business = self._business_sandbox()
        if business:
            children.insert(0, Child("business-sandbox", business.argv))
        if settings.EMBEDDED_REDIS:
            children.insert(0, self._private_redis())
        exit_code = Supervisor(children, self.stdout).run(
            on_ready=lambda: self._on_ready(host, port, password, sandbox, business),
            ready_url=f"http://{host}:{port}/healthz",
        )
        if exit_code:
            raise CommandError(f"stopped: a child process exited with status {exit_code}", returncode=exit_code)

    def _private_redis(self) -> Child:
        """The embedded default's Redis (no REDIS_URL): broker and shared rate limit for every child."""
        redis = PrivateRedis(settings.VAR_DIR)
        try:
            redis.prepare()
            argv = redis.argv()
        except PrivateRedisError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Private Redis on {redis.socket} ({argv[0]})")
        return Child("redis", argv, service=True, ready=redis.answers)

    def _demo_admin(self) -> str:
        """Create or refresh the demo admin; the password lives in var/ (mode 600) across runs."""
        path = Path(settings.VAR_DIR) / "admin-password"
        if path.exists():
            password = path.read_text().strip()
        else:
            password = secrets.token_urlsafe(12)
            path.write_text(password + "\n")
            path.chmod(0o600)
        admin, _ = get_user_model().objects.get_or_create(username=ADMIN_USERNAME)
        admin.is_staff = admin.is_superuser = admin.is_active = True
        admin.set_password(password)
        admin.save()
        return password

    def _demo_sandbox(self) -> DemoSandbox | None:
        """The VPP sandbox as a child, and the console pointed at it (never over a real token)."""
        plan = demo_sandbox_plan()
        if plan is None:
            return None
        os.environ.update(plan.env)  # web, worker and beat inherit APNS_* (the fake) and the poll interval
        if not demo_connect(api_base_url=plan.api_base_url):
            self.stdout.write(
                "A real VPP content token is configured: the sandbox runs, but the console stays on Apple."
            )
        return plan

    def _business_sandbox(self) -> BusinessDemo | None:
        """The Apple Business sandbox as a child, and the console pointed at it (never over a real account)."""
        plan = business_demo_plan()
        if plan is None:
            return None
        os.environ.update(plan.env)
        if not business_demo_connect(plan):
            self.stdout.write("A real Apple Business API account is configured: the console stays on Apple.")
            return None
        return plan

    def _on_ready(
        self, host: str, port: int, password: str, sandbox: DemoSandbox | None, business: BusinessDemo | None = None
    ) -> None:
        if sandbox:
            # The sandbox started first, so it answers by the time the web server does.
            demo_claim(api_base_url=sandbox.api_base_url)
        if business:
            business_demo_sync(business)  # people from Apple Business, in the background
        self._banner(host, port, password, sandbox)
        if business:
            self.stdout.write(f"   Apple Business sandbox  {business.root_url}   (people: Setting › Apple Business)")

    def _banner(self, host: str, port: int, password: str, sandbox: DemoSandbox | None = None) -> None:
        line = "-" * 60
        lines = [
            "",
            line,
            " kmconsole is running",
            "",
            f"   URL       http://{host}:{port}/",
            f"   username  {ADMIN_USERNAME}",
            f"   password  {password}   (kept in {settings.VAR_DIR}/admin-password)",
            "",
        ]
        if sandbox:
            root = sandbox.api_base_url.removesuffix("/mdm/v2")
            lines += [
                f"   VPP sandbox  {sandbox.api_base_url}   (controls: {root}/_sandbox/)",
                f"   fake APNs    {sandbox.apns_url}/_apns/   (pushes, with their invitation links)",
                "",
            ]
        if outbox_active():
            lines += [
                f"   Sent email   http://{host}:{port}{reverse('vpp:sent-messages')}   (no SMTP: the outbox)",
                "",
            ]
        lines += [
            " Ctrl-C stops everything.",
            line,
        ]
        self.stdout.write(self.style.SUCCESS("\n".join(lines)))


class Supervisor:
    """Start children, stop them all on SIGINT/SIGTERM or when one of them exits."""

    def __init__(self, children: list[Child], stdout):
        self.children = children
        self.stdout = stdout
        self.processes: dict[str, subprocess.Popen] = {}
        self.stopping = False

    def run(self, *, on_ready=None, ready_url: str | None = None) -> int:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            for child in self.children:
                # Own session: a terminal Ctrl-C reaches only us, and we stop children in order.
                process = subprocess.Popen(child.argv, start_new_session=True)  # noqa: S603
                self.processes[child.name] = process
                self.stdout.write(f"started {child.name} (pid {process.pid})")
                if child.ready and not self._wait_ready(child, process):
                    self.stop()
                    return process.returncode or 1
            announced = False
            started = time.monotonic()
            while not self.stopping:
                for name, process in self.processes.items():
                    if process.poll() is not None:
                        self.stdout.write(f"{name} exited with status {process.returncode}; stopping the others")
                        self.stop()
                        return process.returncode or 1
                if not announced and (ready_url is None or _answers(ready_url)):
                    announced = True
                    if on_ready:
                        on_ready()
                elif not announced and time.monotonic() - started > 60:
                    announced = True
                    self.stdout.write(f"warning: {ready_url} does not answer yet")
                time.sleep(0.3)
            self.stop()
            return 0
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _wait_ready(self, child: Child, process: subprocess.Popen) -> bool:
        """Wait (up to READY_TIMEOUT s, or a signal) until a service answers; False if it does not."""
        deadline = time.monotonic() + READY_TIMEOUT
        while not child.ready():
            if process.poll() is not None:
                self.stdout.write(f"{child.name} exited with status {process.returncode}; stopping")
                return False
            if self.stopping or time.monotonic() > deadline:
                self.stdout.write(f"{child.name} did not answer; stopping")
                return False
            time.sleep(0.1)
        return True

    def _on_signal(self, signum, frame):
        self.stopping = True

    def stop(self) -> None:
        """Stop the children, the services (the Redis the others ack their tasks to) last."""
        services = {child.name for child in self.children if child.service}
        for tier in ([n for n in self.processes if n not in services], [n for n in self.processes if n in services]):
            for name in tier:
                if self.processes[name].poll() is None:
                    self.processes[name].terminate()
            deadline = time.monotonic() + STOP_TIMEOUT
            for name in tier:
                process = self.processes[name]
                try:
                    process.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    self.stdout.write(f"{name} did not stop in {STOP_TIMEOUT} s; killing it")
                    process.kill()
                    process.wait()
        self.stdout.write("all processes stopped")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - our own http://host:port
            return response.status == 200
    except OSError:
        return False
