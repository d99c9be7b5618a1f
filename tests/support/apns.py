"""pytest plugin: a fake APNs (vpp/sandbox/apns.py) on a free port, and settings pointing at it.

- ``apns_key``: a throwaway P-256 key (PEM text, key id, team id, topic), one per session.
- ``fake_apns``: the fake server (one per session, state reset for each test): ``.base_url``,
  ``.state`` (FakeApnsState: ``.pushes``, ``.unregister(token)``, ``.set_fault(...)``),
  ``.config(**overrides)`` → an ApnsConfig for it.
- ``apns_settings``: settings.APNS_* point at the fake, for code that reads settings.
"""

from __future__ import annotations

import dataclasses

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from vpp.apple.apns import ApnsConfig
from vpp.sandbox.apns import FakeApnsServer, FakeApnsState


@dataclasses.dataclass(frozen=True)
class ApnsKey:
    pem: str
    key_id: str = "TESTKEY123"
    team_id: str = "TESTTEAM99"
    topic: str = "com.example.agent"


class FakeApns:
    def __init__(self, server: FakeApnsServer, key: ApnsKey) -> None:
        self.server = server
        self.state = server.state
        self.key = key
        self.base_url = server.base_url

    def config(self, **overrides) -> ApnsConfig:
        values = {
            "base_url": self.base_url,
            "key_id": self.key.key_id,
            "team_id": self.key.team_id,
            "topic": self.key.topic,
            "private_key_pem": self.key.pem,
            "timeout": 5.0,
        }
        return ApnsConfig(**{**values, **overrides})


def new_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


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
def apns_settings(settings, fake_apns, tmp_path):
    settings.APNS_HOST = fake_apns.base_url
    settings.APNS_KEY = fake_apns.key.pem
    settings.APNS_KEY_ID = fake_apns.key.key_id
    settings.APNS_TEAM_ID = fake_apns.key.team_id
    settings.APNS_TOPIC = fake_apns.key.topic
    settings.REDIS_URL = None  # the file token store, under this test's own directory
    settings.VAR_DIR = tmp_path
    return settings
