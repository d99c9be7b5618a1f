"""A real Celery worker subprocess for tests: same code, the test database, the suite's Redis.

The worker inherits the environment: REDIS_URL when the suite was given one, otherwise
KMCONSOLE_VAR_DIR, from which its settings find the private Redis (tests/support/redis_db.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def database_url() -> str:
    """The URL of the database the test process is using right now (pytest-django's test DB)."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    user = db.get("USER") or ""
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    return f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


class Worker:
    def __init__(self, *, outbox: Path, env: dict[str, str] | None = None, concurrency: int = 2):
        self.outbox = outbox
        self.extra_env = env or {}
        self.concurrency = concurrency
        self.proc: subprocess.Popen | None = None
        self.log = outbox.parent / "worker.log"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            DATABASE_URL=database_url(),
            EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend",
            EMAIL_FILE_PATH=str(self.outbox),
            VPP_EVENT_POLL_INTERVAL="1",
            LOG_LEVEL="WARNING",
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        return env

    def start(self) -> Worker:
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "kmconsole",
            "worker",
            "--pool",
            "prefork",
            "--concurrency",
            str(self.concurrency),
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-Q",
            settings.CELERY_TASK_DEFAULT_QUEUE,
            "-n",
            f"test-{os.getpid()}-{time.monotonic_ns()}@%h",
        ]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                command, cwd=ROOT, env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and pool children), as a crash would."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGQUIT)  # cold shutdown: no waiting for ETA messages
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def purge_queue() -> None:
    """Drop messages a previous run may have left (they name jobs that no longer exist anyway)."""
    from kmconsole.celery import app

    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(settings.CELERY_TASK_DEFAULT_QUEUE)


def broker_tasks() -> list[tuple[str, str]]:
    """(task name, argsrepr) of each message the broker holds: queued, or delivered and not yet acknowledged.

    kombu's Redis transport keeps a delivered message in the ``unacked`` hash until the task
    acknowledges it (``acks_late``) and gives it out again if that never happens.
    """
    import json

    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    raw = [json.loads(value)[0] for value in client.hvals("unacked")]
    raw += [json.loads(value) for value in client.lrange(settings.CELERY_TASK_DEFAULT_QUEUE, 0, -1)]
    return [(message["headers"]["task"], message["headers"]["argsrepr"]) for message in raw]


def read_outbox(outbox: Path) -> list[str]:
    """The messages the filebased email backend wrote (one file per connection, messages separated)."""
    texts = []
    for path in sorted(outbox.glob("*.log")):
        texts.extend(part for part in path.read_text().split("-" * 79) if part.strip())
    return texts


def wait_until(predicate, *, timeout: float, interval: float = 0.2, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {message}")
