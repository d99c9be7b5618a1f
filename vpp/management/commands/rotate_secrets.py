"""Re-encrypt all stored secrets under the first key of KMCONSOLE_ENCRYPTION_KEYS."""

from django.core.management.base import BaseCommand, CommandError

from vpp.services.secrets_rotation import secrets_rotate


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret with the newest key (the first in KMCONSOLE_ENCRYPTION_KEYS). "
        "Afterwards the older keys can be removed from the list."
    )

    def handle(self, *args, **options):
        report = secrets_rotate()
        if report.unreadable:
            raise CommandError(
                "Nothing changed: these values cannot be decrypted with the configured keys: "
                + ", ".join(report.unreadable)
            )
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {report.rotated} secret(s) under the newest key."))
