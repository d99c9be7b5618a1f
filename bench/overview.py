"""Server time of the VPP overview page (and a person's page) with 100,000 device users.

    .venv/bin/python bench/overview.py                  # SQLite and Postgres, 100,000 users, 50 runs
    .venv/bin/python bench/overview.py --db sqlite --runs 100
    .venv/bin/python bench/overview.py --reseed          # rebuild the bench databases

The device users come from bench/users_page.py's seeding (users.demo, the same 100,000 people);
then VPP users are added for about 60% of them: every funnel stage, invited users spread over
60 days, a few with an error. Data goes to dedicated databases, never the dev or test one:
SQLite var/bench/overview.sqlite3 and Postgres km_bench_overview (BENCH_OVERVIEW_POSTGRES_URL).
Each database is measured in its own interpreter, in-process with Django's test Client as a
logged-in admin, DEBUG off, like bench/users_page.py. Target: p95 < 100 ms for the overview.
The person page's live licence list is a separate request (not measured: it waits for Apple).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from users_page import run_child as users_page_run_child  # noqa: E402  (the Users page bench's runner)
from users_page import seed, time_url  # noqa: E402  (... and its seeding and timing)

SQLITE_PATH = ROOT / "var" / "bench" / "overview.sqlite3"
POSTGRES_URL = os.environ.get("BENCH_OVERVIEW_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/km_bench_overview")
TARGET_MS = 100.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--reseed", action="store_true", help="drop and seed the bench data again")
    parser.add_argument("--child", choices=("sqlite", "postgres"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, users=args.users, runs=args.runs, reseed=args.reseed)))
        return
    results = {}
    for db in ("sqlite", "postgres") if args.db == "both" else (args.db,):
        results[db] = run_child(db, args)
    print_table(results, args)


def run_child(db: str, args) -> dict:
    return users_page_run_child(db, args, script=__file__, sqlite_path=SQLITE_PATH, postgres_url=POSTGRES_URL)


# --- in the child process -------------------------------------------------------------------
def measure(db: str, *, users: int, runs: int, reseed: bool) -> dict:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kmconsole.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    from users.models import User
    from vpp.models import VppUser

    call_command("migrate", interactive=False, verbosity=0)
    if reseed or User.objects.count() != users or not VppUser.objects.exists():
        VppUser.objects.all().delete()
        seed(db, users)
        seed_vpp_users(db)
    admin, _ = get_user_model().objects.get_or_create(username="bench-admin", defaults={"is_superuser": True})
    admin.is_staff = admin.is_superuser = True
    admin.save()
    client = Client()
    client.force_login(admin)
    person = VppUser.objects.filter(user__isnull=False).order_by("pk").values_list("user_id", flat=True)[5000]
    counts = client.get("/vpp/").content.decode().count("data-count=")
    return {
        "overview": time_url(client, "/vpp/", runs),
        "person page": time_url(client, f"/users/{person}/", runs),
        "funnel numbers": counts,
        "vpp_users": VppUser.objects.count(),
    }


def seed_vpp_users(db: str) -> None:
    """VPP users for about 60% of the device users: every status, invited ones over 60 days."""
    from django.db import connection
    from django.utils import timezone

    from users.models import User
    from vpp.models import VppUser, VppUserStatus

    started = time.monotonic()
    rng = random.Random(42)
    now = timezone.now()
    statuses = [VppUserStatus.ASSOCIATED] * 55 + [VppUserStatus.INVITED] * 30
    statuses += [VppUserStatus.RETIRED] * 12 + [VppUserStatus.PENDING] * 3
    batch = []
    for user_id in User.objects.order_by("pk").values_list("pk", flat=True).iterator(chunk_size=5000):
        if rng.random() > 0.6:
            continue
        status = rng.choice(statuses)
        failed = rng.random() < 0.03
        batch.append(
            VppUser(
                user_id=user_id,
                status=status,
                invited_at=now - dt.timedelta(days=60 * rng.random()) if status != VppUserStatus.PENDING else None,
                id_hash=f"hash{user_id}" if status == VppUserStatus.ASSOCIATED else "",
                last_error_number=9610 if failed else None,
                last_error_message="Apple refused the request." if failed else "",
            )
        )
        if len(batch) >= 5000:
            VppUser.objects.bulk_create(batch)
            batch = []
    VppUser.objects.bulk_create(batch)
    if db == "postgres":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
    print(f"[{db}] seeded {VppUser.objects.count():,} VPP users in {time.monotonic() - started:.1f} s", file=sys.stderr)


# --- report ---------------------------------------------------------------------------------
def print_table(results: dict, args) -> None:
    load = os.getloadavg()
    print(f"\nVPP overview — {args.users:,} device users, {args.runs} runs per case, ms")
    print(
        f"(wall-clock server time, in-process test client; load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"
        f" on {os.cpu_count()} CPUs)"
    )
    print(f"{'db':9} {'case':12} {'median':>8} {'p95':>8} {'cpu p95':>8}  verdict")
    for db, cases in results.items():
        for label in ("overview", "person page"):
            timing = cases[label]
            ok = timing["p95"] < TARGET_MS
            print(
                f"{db:9} {label:12} {timing['median']:8.1f} {timing['p95']:8.1f} {timing['cpu_p95']:8.1f}"
                f"  {'ok' if ok else 'MISSED'}"
            )
        print(f"{db:9} ({cases['vpp_users']:,} VPP users, {cases['funnel numbers']} funnel numbers)")
    print(f"\nok = p95 < {TARGET_MS:.0f} ms.")


if __name__ == "__main__":
    main()
