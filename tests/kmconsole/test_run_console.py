"""manage.py run_console starts web, worker and beat, and stops them all together."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from kmconsole.private_redis import PrivateRedis

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.worker


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return state != "Z"


class Console:
    """run_console as a subprocess on a free port with its own var/: the embedded default
    (SQLite, no REDIS_URL: the private Redis under var/)."""

    def __init__(self, tmp_path: Path):
        self.port = _free_port()
        self.redis = PrivateRedis(tmp_path / "var")
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY")}
        env.update(KMCONSOLE_VAR_DIR=str(tmp_path / "var"), DEBUG="1", PYTHONUNBUFFERED="1", PORT=str(self.port))
        env.update(VPP_SANDBOX_PORT="0", VPP_SANDBOX_APNS_PORT="0")  # the sandbox on free ports, never 8089
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "run_console", "--demo-users", "5"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.output.append(line)

    @property
    def text(self) -> str:
        return "".join(self.output)

    def children(self) -> dict[str, int]:
        return {name: int(pid) for name, pid in re.findall(r"started (\w+) \(pid (\d+)\)", self.text)}

    def wait_until_ready(self, timeout=90):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.text
            if "kmconsole is running" in self.text:
                return
            time.sleep(0.3)
        raise AssertionError(f"run_console did not come up:\n{self.text}")

    def get(self, path: str) -> tuple[int, str]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as response:
            return response.status, response.read().decode()

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
        for pid in self.children().values():
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _assert_console_points_at_its_sandbox(console, tmp_path):
    import json
    import sqlite3

    assert "sandbox" in console.children()
    (api_base_url,) = re.findall(r"VPP sandbox\s+(\S+/mdm/v2)", console.text)
    deadline = time.monotonic() + 30  # the banner waits for the web only; the sandbox may be a moment later
    while True:
        try:
            with urllib.request.urlopen(api_base_url + "/service/config", timeout=5) as response:
                config = json.load(response)
            break
        except OSError:
            assert time.monotonic() < deadline, console.text
            time.sleep(0.2)
    assert config["urls"]["getUsers"] == api_base_url + "/users"
    with sqlite3.connect(tmp_path / "var" / "kmconsole.sqlite3") as db:
        (stored,) = db.execute("select api_base_url from vpp_vppserversetting").fetchone()
    assert stored == api_base_url


@pytest.fixture
def console(tmp_path):
    console = Console(tmp_path)
    yield console
    console.stop()


def test_it_runs_web_worker_and_beat_and_stops_all_on_one_ctrl_c(console, tmp_path):
    console.wait_until_ready()
    assert set(console.children()) >= {"redis", "web", "worker", "beat"}
    assert console.redis.answers() and console.redis.socket.is_relative_to(tmp_path / "var")
    assert console.get("/healthz") == (200, '{"status": "ok"}')
    password = (tmp_path / "var" / "admin-password").read_text().strip()
    assert f"password  {password}" in console.text
    assert f"http://127.0.0.1:{console.port}/" in console.text
    _assert_console_points_at_its_sandbox(console, tmp_path)

    console.process.send_signal(signal.SIGINT)
    assert console.process.wait(timeout=60) == 0, console.text
    assert not [name for name, pid in console.children().items() if _alive(pid)]
    assert not console.redis.answers()


def test_the_worker_runs_tasks_through_the_private_redis(console, tmp_path):
    # A task published from another process (manage.py shell, the embedded default's settings)
    # reaches the console's worker through the private Redis.
    console.wait_until_ready()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(KMCONSOLE_VAR_DIR=str(tmp_path / "var"), DEBUG="1")
    code = "from vpp.tasks import jobs_sweep; print(jobs_sweep.apply_async().id)"
    shell = [sys.executable, "manage.py", "shell", "-c", code]
    task_id = subprocess.run(shell, cwd=ROOT, env=env, check=True, timeout=60, capture_output=True, text=True)
    task_id = task_id.stdout.strip().splitlines()[-1]
    deadline = time.monotonic() + 60
    while f"vpp.jobs_sweep[{task_id}] succeeded" not in console.text:
        assert time.monotonic() < deadline, console.text
        time.sleep(0.3)


def test_it_refuses_to_start_a_second_redis_on_the_same_var(tmp_path):
    redis_server = PrivateRedis(tmp_path / "var").start()
    try:
        console = Console(tmp_path)
        assert console.process.wait(timeout=60) != 0
        assert f"A Redis already serves {redis_server.socket}" in console.text
        assert redis_server.answers()  # the running one is left alone
    finally:
        redis_server.stop()


def test_it_stops_everything_and_fails_when_a_child_dies(console):
    console.wait_until_ready()
    children = console.children()
    os.kill(children["beat"], signal.SIGKILL)
    assert console.process.wait(timeout=60) != 0
    assert "beat exited" in console.text
    assert not [name for name, pid in children.items() if _alive(pid)]


def test_the_banner_points_at_sent_messages_when_email_goes_to_the_outbox(settings):
    import io

    from kmconsole.management.commands.run_console import Command

    settings.EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    out = io.StringIO()
    Command(stdout=out)._banner("127.0.0.1", 8000, "pw")
    assert "Sent email   http://127.0.0.1:8000/setting/sent-messages/" in out.getvalue()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    out = io.StringIO()
    Command(stdout=out)._banner("127.0.0.1", 8000, "pw")
    assert "sent-messages" not in out.getvalue()
