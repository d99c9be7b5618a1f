"""Requests per second through /api/v1/ next to the same work through the console's own views.

    .venv/bin/python bench/api.py [--users 5000] [--seconds 5] [--redis-url redis://127.0.0.1:6379/N]

In-process (Django's test client, no HTTP server, so the figures compare the two code paths,
not a network): a fresh SQLite database in a temporary directory with ``--users`` eligible
device users, a content token that is never called (nothing is dispatched: the Celery broker
is the in-memory transport), and the private Redis of the embedded default (or --redis-url)
for the API's rate-limit counter. Measured:

- listing users, page 1 of 50, sorted by name: ``GET /api/v1/users`` (JSON) against
  ``GET /users/`` (the Users page's HTML), calls per second over ``--seconds``;
- starting a 1,000-user invite job: ``POST /api/v1/jobs`` (plan + job in one call) against the
  console's confirm + apply (two POSTs, the signed plan carried between them), jobs per second.

Figures (2 shared cores; load average printed with them):

    2026-11-30, load average 13.9 (7 helpers sharing the machine), 5,000 users, SQLite:
      list users, page of 50      API 8.1/s (124 ms)     console 8.2/s (122 ms)
      start a 1,000-user invite   API 0.5/s (1.91 s)     console 0.5/s (2.05 s, confirm + apply)

The API's list costs what the page costs (the same selector; the API writes an audit event
per call where the page renders HTML). Its start is one request for what the console does in
two (the plan is built once instead of twice, but job_create dominates).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def configure_env(tmp: Path, redis_url: str | None) -> None:
    from cryptography.fernet import Fernet

    os.environ.update(
        DJANGO_SETTINGS_MODULE="kmconsole.settings",
        DEBUG="0",
        HTTPS="0",
        STATIC_MANIFEST="0",
        ALLOWED_HOSTS="testserver,localhost",
        SECRET_KEY="bench-only-secret-key-0123456789-0123456789-0123456789",
        KMCONSOLE_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        KMCONSOLE_VAR_DIR=str(tmp),
        DATABASE_URL=f"sqlite:///{tmp / 'bench.sqlite3'}",
        API_RATE_LIMIT="1000000",
        LOG_LEVEL="ERROR",
    )
    if redis_url:
        os.environ["REDIS_URL"] = redis_url


def rate(func, seconds: float) -> tuple[float, float]:
    """(calls per second, mean seconds per call) of ``func`` over about ``seconds``."""
    func()  # warm up
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        func()
        count += 1
    elapsed = time.perf_counter() - started
    return count / elapsed, elapsed / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--redis-url")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="kmconsole-bench-api-"))
    configure_env(tmp, args.redis_url)
    import django

    django.setup()
    from django.contrib.auth.models import User as Admin
    from django.core.management import call_command
    from django.test import Client

    from kmconsole.api import services
    from kmconsole.celery import app
    from kmconsole.private_redis import PrivateRedis
    from tests.support.users import make_users
    from vpp import secrets
    from vpp.models import Job, JobItem, VppServerSetting, VppUser

    app.conf.broker_url = "memory://"
    private_redis = None if args.redis_url else PrivateRedis(tmp).start()
    try:
        call_command("migrate", verbosity=0)
        users = make_users(args.users)
        setting = VppServerSetting.load()
        setting.content_token_encrypted = secrets.encrypt("never-called")
        setting.save()
        admin = Admin.objects.create_superuser("bench", password=None)
        _, secret = services.token_create(admin=admin, name="bench", scopes=list(services.SCOPES))
        api = Client(HTTP_AUTHORIZATION=f"Bearer {secret}")
        console = Client()
        console.force_login(admin)
        ids = [u.pk for u in users[:1000]]

        def reset():
            JobItem.objects.all().delete()
            Job.objects.all().delete()
            VppUser.objects.all().delete()

        keys = iter(range(10**9))

        def api_list():
            assert api.get("/api/v1/users").status_code == 200

        def console_list():
            assert console.get("/users/").status_code == 200

        def api_start():
            reset()
            response = api.post(
                "/api/v1/jobs",
                {"action": "invite", "user_ids": ids},
                content_type="application/json",
                HTTP_IDEMPOTENCY_KEY=str(next(keys)),
            )
            assert response.status_code == 201, response.content

        def console_start():
            reset()
            form = {"pk": [str(pk) for pk in ids]}
            urlencoded = "application/x-www-form-urlencoded"  # as htmx posts it (vpp/middleware.py)
            confirm = console.post("/vpp/bulk/invite/confirm/", urlencode(form, doseq=True), content_type=urlencoded)
            assert confirm.status_code == 200, confirm.status_code
            plan = re.search(rb'name="plan" value="([^"]+)"', confirm.content).group(1).decode()
            body = urlencode({**form, "plan": plan}, doseq=True)
            applied = console.post("/vpp/bulk/invite/apply/", body, content_type=urlencoded)
            assert applied.status_code == 200 and Job.objects.count() == 1, applied.status_code

        figures = {
            "list users, page of 50": (rate(api_list, args.seconds), rate(console_list, args.seconds)),
            "start a 1,000-user invite": (rate(api_start, args.seconds), rate(console_start, args.seconds)),
        }
        load = os.getloadavg()[0]
        print(f"load average {load:.1f}, {args.users:,} users")
        for name, ((api_rps, api_s), (con_rps, con_s)) in figures.items():
            api_text = f"API {api_rps:6.1f}/s ({api_s * 1000:.1f} ms)"
            print(f"  {name:28} {api_text}   console {con_rps:6.1f}/s ({con_s * 1000:.1f} ms)")
    finally:
        if private_redis:
            private_redis.stop()


if __name__ == "__main__":
    main()
