"""Print a new Fernet key for KMCONSOLE_ENCRYPTION_KEYS (put it first, then run rotate_secrets)."""

from cryptography.fernet import Fernet
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Print a new encryption key for KMCONSOLE_ENCRYPTION_KEYS."

    def handle(self, *args, **options):
        self.stdout.write(Fernet.generate_key().decode())
