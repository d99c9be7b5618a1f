"""Settings from the environment: bad values stop start-up with a message naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GOOD = {
    "SECRET_KEY": "settings-test-key-0123456789-abcdefghijklmnopqrstuvwxyz",
    "DEBUG": "0",
    "KMCONSOLE_ENCRYPTION_KEYS": "dGVzdC1rZXktZm9yLXRoZS10ZXN0LXN1aXRlLW9ubHk=",
}
PROBE = "import django; django.setup(); from django.conf import settings as s; print(repr({expr}))"


def load(tmp_path, expr: str = "s.DEBUG", **env: str) -> subprocess.CompletedProcess:
    """Import the settings in a fresh interpreter with exactly this environment."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_", "EMAIL_", "CELERY_"))}
    clean.update(GOOD, KMCONSOLE_VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="kmconsole.settings")
    clean.update(env)
    clean = {k: v for k, v in clean.items() if v is not None}
    return subprocess.run(
        [sys.executable, "-c", PROBE.format(expr=expr)], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DATABASE_URL": "not a url"}, "DATABASE_URL must be a URL"),
        ({"DATABASE_URL": "mysql://db/x"}, "DATABASE_URL must use one of postgres, postgresql, sqlite"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL must be a URL"),
        ({"DEBUG": "maybe"}, "DEBUG must be a boolean"),
        ({"SESSION_COOKIE_AGE": "ten"}, "SESSION_COOKIE_AGE must be a whole number"),
        ({"EMAIL_PORT": "70000"}, "EMAIL_PORT must be at most 65535"),
        ({"SECRET_KEY": ""}, "SECRET_KEY must be set when DEBUG is off"),
        ({"EMAIL_USE_TLS": "1", "EMAIL_USE_SSL": "1"}, "EMAIL_USE_TLS and EMAIL_USE_SSL cannot both be on"),
        ({"CELERY_TASK_TIME_LIMIT": "4000"}, "CELERY_TASK_TIME_LIMIT must stay below CELERY_VISIBILITY_TIMEOUT"),
        (
            {"LOGIN_FAILURES_PER_ADDRESS": "30", "LOGIN_FAILURES_PER_ACCOUNT": "30"},
            "LOGIN_FAILURES_PER_ACCOUNT must be above LOGIN_FAILURES_PER_ADDRESS",
        ),
    ],
)
def test_it_stops_start_up_naming_the_bad_variable(tmp_path, env, message):
    result = load(tmp_path, **env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert message in result.stderr


def test_it_never_echoes_a_database_url_that_may_carry_a_password(tmp_path):
    result = load(tmp_path, DATABASE_URL="postgres//user:s3cret-pw@db/x")
    assert result.returncode != 0
    assert "s3cret-pw" not in result.stderr


def test_it_defaults_to_sqlite_in_var_with_wal(tmp_path):
    result = load(tmp_path, expr="s.DATABASES['default']")
    assert result.returncode == 0, result.stderr
    assert "sqlite3" in result.stdout and str(tmp_path) in result.stdout
    assert "journal_mode=WAL" in result.stdout and "IMMEDIATE" in result.stdout


def test_it_uses_postgres_and_redis_when_their_urls_are_set(tmp_path):
    result = load(
        tmp_path,
        expr="(s.DATABASES['default']['ENGINE'], s.CELERY_BROKER_URL)",
        DATABASE_URL="postgres://u@127.0.0.1:5432/kmx",
        REDIS_URL="redis://127.0.0.1:6379/9",
    )
    assert result.returncode == 0, result.stderr
    assert "('django.db.backends.postgresql', 'redis://127.0.0.1:6379/9')" in result.stdout


def test_without_redis_url_it_uses_the_private_redis_under_var(tmp_path):
    # The embedded default: Celery's Redis transport and the shared limiter, on the socket that
    # run_console's private redis-server serves (kmconsole/private_redis.py), never a file queue.
    result = load(tmp_path, expr="(s.EMBEDDED_REDIS, s.REDIS_URL, s.CELERY_BROKER_URL)")
    assert result.returncode == 0, result.stderr
    socket = tmp_path / "redis" / "redis.sock"
    assert result.stdout.strip() == repr((True, f"unix://{socket}?db=0", f"redis+socket://{socket}?virtual_host=0"))


def test_a_unix_socket_redis_url_reaches_celery_in_kombus_spelling(tmp_path):
    result = load(tmp_path, expr="(s.EMBEDDED_REDIS, s.CELERY_BROKER_URL)", REDIS_URL="unix:///run/redis.sock?db=3")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == repr((False, "redis+socket:///run/redis.sock?virtual_host=3"))


def test_it_makes_a_development_secret_key_only_with_debug(tmp_path):
    result = load(tmp_path, expr="s.SECRET_KEY", SECRET_KEY="", DEBUG="1")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "secret_key").read_text().strip() in result.stdout
