"""manage.py seed_demo --users N [--reset] [--seed S]: realistic demo device users."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from users.demo import demo_users_create, demo_users_delete
from users.models import User


class Command(BaseCommand):
    help = "Create demo device users with devices (iOS, iPadOS, macOS, Android, Windows)."

    def add_arguments(self, parser):
        parser.add_argument("--users", type=int, default=500, help="how many device users to add (default 500)")
        parser.add_argument("--reset", action="store_true", help="delete all device users and devices first")
        parser.add_argument("--seed", type=int, default=1, help="random seed; the same seed gives the same data")

    def handle(self, *args, users: int, reset: bool, seed: int, **options):
        if users < 0:
            raise CommandError("--users must be 0 or more")
        started = time.monotonic()
        if reset:
            demo_users_delete()
            self.stdout.write("Deleted all device users and devices.")
        result = demo_users_create(count=users, seed=seed)
        elapsed = time.monotonic() - started
        self.stdout.write(
            self.style.SUCCESS(
                f"Created {result.users:,} device users with {result.devices:,} devices in {elapsed:.1f} s "
                f"({User.objects.count():,} device users in total)."
            )
        )
