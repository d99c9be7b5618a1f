"""A fake APNs for tests: a throwaway provider key and a handle on vpp/sandbox/apns.py's server.

The fixtures (``apns_key``, ``fake_apns``, ``apns_settings``) live in tests/vpp/conftest.py.
"""

from __future__ import annotations

import dataclasses

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from vpp.apple.apns import ApnsConfig
from vpp.sandbox.apns import FakeApnsServer


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
