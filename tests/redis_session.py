"""pytest plugin: the test suite's Redis, started before pytest-django reads the settings.

Loaded with ``-p tests.redis_session`` (pyproject.toml addopts; outside tests/support/ so that
package's assertion rewriting is registered in time by tests/conftest.py). With ``REDIS_URL``
set (CI's first pass) the suite uses that Redis. Without it the suite runs the embedded default:
it starts the same private redis-server that ``make run`` starts (kmconsole/private_redis.py)
for the suite's own var/ (``var/test/`` unless KMCONSOLE_VAR_DIR says otherwise, so a
``make run`` in the same checkout keeps its own), empties it, and stops it at the end. The test
process, the worker subprocesses (tests/support/worker.py) and the limiter tests all reach it
through settings.REDIS_URL, exactly as the console's processes do.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args):
    if os.environ.get("REDIS_URL"):
        return
    import redis

    from kmconsole.private_redis import PrivateRedis

    var_dir = Path(os.environ.setdefault("KMCONSOLE_VAR_DIR", str(ROOT / "var" / "test")))
    server = PrivateRedis(var_dir)
    if server.answers():  # left over by a session that was killed: it is ours, stop it
        redis.Redis(unix_socket_path=str(server.socket)).shutdown(nosave=True)
    server.start()
    early_config.add_cleanup(server.stop)
    redis.Redis.from_url(server.url).flushall()  # nothing from an earlier session (queue, pauses)
