from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission

from tests.support.apns import ApnsKey, FakeApns, new_pem
from tests.support.fake_apple import FakeApple
from tests.support.redis_db import delete_prefix, redis_client
from tests.support.sandbox import store_sandbox_token
from tests.support.users import make_user
from vpp import secrets
from vpp.models import VppServerSetting
from vpp.sandbox.apns import FakeApnsServer, FakeApnsState


@pytest.fixture
def user_factory():
    return make_user


@pytest.fixture
def apple():
    return FakeApple()


@pytest.fixture
def token_setting(db):
    setting = VppServerSetting.load()
    setting.content_token_encrypted = secrets.encrypt("fake-s-token")
    setting.token_org_name = "Example Org"
    setting.save()
    return setting


@pytest.fixture
def sandbox_setting(vpp_sandbox, settings):
    """The console pointed at the sandbox (token stored), events polled every second, mail in memory."""
    settings.VPP_EVENT_POLL_INTERVAL = 1
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    return store_sandbox_token(vpp_sandbox)


@pytest.fixture
def admin(client, django_user_model):
    """A console admin who may change the VPP Server Setting, logged in."""
    user = django_user_model.objects.create_user("admin", email="admin@example.com", password=None)
    user.user_permissions.add(Permission.objects.get(codename="change_vppserversetting"))
    client.force_login(user)
    return user


# --------------------------------------------------------------------------- a fake APNs
# ``apns_key``: a throwaway P-256 key (PEM text, key id, team id, topic), one per session.
# ``fake_apns``: the fake server (one per session, state reset for each test): ``.base_url``,
# ``.state`` (FakeApnsState: ``.pushes``, ``.unregister(token)``, ``.set_fault(...)``),
# ``.config(**overrides)`` → an ApnsConfig for it (tests/support/apns.py).
# ``apns_settings``: settings.APNS_* point at the fake, for code that reads settings.


@pytest.fixture(scope="session")
def apns_key() -> ApnsKey:
    return ApnsKey(pem=new_pem())


@pytest.fixture(scope="session")
def _fake_apns_server(apns_key):
    state = FakeApnsState.from_pem(
        key_id=apns_key.key_id, team_id=apns_key.team_id, pem=apns_key.pem, topic=apns_key.topic
    )
    with FakeApnsServer(state) as server:
        yield server


@pytest.fixture
def fake_apns(_fake_apns_server, apns_key) -> FakeApns:
    _fake_apns_server.state.clear(unregistered=True)
    return FakeApns(_fake_apns_server, apns_key)


@pytest.fixture
def apns_settings(settings, fake_apns):
    settings.APNS_HOST = fake_apns.base_url
    settings.APNS_KEY = fake_apns.key.pem
    settings.APNS_KEY_ID = fake_apns.key.key_id
    settings.APNS_TEAM_ID = fake_apns.key.team_id
    settings.APNS_TOPIC = fake_apns.key.topic
    delete_prefix(redis_client(), "kmconsole:apns")  # no provider token left by an earlier test
    return settings


@pytest.fixture
def sandbox_unit(vpp_sandbox, settings):
    """The sandbox's token uploaded and its organizational unit claimed; events polled every second,
    mail kept in memory. Returns the VppServerSetting."""
    from tests.support.sandbox import upload_sandbox_token

    settings.VPP_EVENT_POLL_INTERVAL = 1
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    return upload_sandbox_token(vpp_sandbox)
