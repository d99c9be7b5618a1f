"""manage.py genkey and rotate_secrets."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command

from vpp import secrets as vault
from vpp.models import VppServerSetting

OLD = Fernet.generate_key().decode()
NEW = Fernet.generate_key().decode()


@pytest.fixture
def keys(settings):
    def use(*names):
        settings.KMCONSOLE_ENCRYPTION_KEYS = list(names)
        vault.reset_cache()

    yield use
    vault.reset_cache()


def test_it_prints_a_usable_fernet_key(capsys):
    call_command("genkey")
    key = capsys.readouterr().out.strip()
    assert Fernet(key.encode()).decrypt(Fernet(key.encode()).encrypt(b"x")) == b"x"


@pytest.mark.django_db
def test_it_reencrypts_every_secret_under_the_newest_key(keys, capsys):
    keys(OLD)
    setting = VppServerSetting.load()
    setting.content_token_encrypted = vault.encrypt("s-token")
    setting.notification_auth_token_encrypted = vault.encrypt("bearer")
    setting.save()
    keys(NEW, OLD)
    call_command("rotate_secrets")
    assert "Re-encrypted 2 secret(s)" in capsys.readouterr().out
    keys(NEW)  # the old key is gone: everything must still decrypt
    setting.refresh_from_db()
    assert vault.decrypt(setting.content_token_encrypted) == "s-token"
    assert vault.decrypt(setting.notification_auth_token_encrypted) == "bearer"


@pytest.mark.django_db
def test_it_changes_nothing_when_a_secret_is_unreadable(keys):
    keys(OLD)
    setting = VppServerSetting.load()
    setting.content_token_encrypted = vault.encrypt("s-token")
    setting.save()
    before = setting.content_token_encrypted
    keys(NEW)  # OLD forgotten too early
    with pytest.raises(CommandError, match="Nothing changed"):
        call_command("rotate_secrets")
    setting.refresh_from_db()
    assert setting.content_token_encrypted == before
    assert "s-token" not in str(setting.__dict__)
