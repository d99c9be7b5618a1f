"""Secrets at rest: MultiFernet under keys kept apart from SECRET_KEY.

KMCONSOLE_ENCRYPTION_KEYS is a comma-separated list of Fernet keys, newest first; the
first encrypts, all decrypt, so a key can be rotated in (see ``manage.py rotate_secrets``).
With DEBUG on and no keys set, a development key is generated under var/.
"""

from __future__ import annotations

from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class SecretUnreadable(Exception):
    """A stored secret cannot be decrypted with the configured keys."""


@cache
def _fernet() -> MultiFernet:
    keys = list(settings.KMCONSOLE_ENCRYPTION_KEYS)
    if not keys:
        raise ImproperlyConfigured("KMCONSOLE_ENCRYPTION_KEYS must be set (generate one with manage.py genkey)")
    try:
        return MultiFernet([Fernet(key.encode()) for key in keys])
    except ValueError:
        raise ImproperlyConfigured("KMCONSOLE_ENCRYPTION_KEYS holds a key that is not a valid Fernet key") from None


def reset_cache() -> None:
    _fernet.cache_clear()


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str) -> str:
    try:
        return _fernet().decrypt(ciphertext.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable("stored secret cannot be decrypted with the configured keys") from None


def rotate(ciphertext: str) -> str:
    """Re-encrypt under the newest key."""
    try:
        return _fernet().rotate(ciphertext.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable("stored secret cannot be decrypted with the configured keys") from None
