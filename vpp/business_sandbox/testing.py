"""Start the Apple Business sandbox from Python (tests, bench, ``make run``) and drive it over HTTP.

    handle = start_process_business_sandbox(people=60)   # a real `python -m vpp.business_sandbox`
    handle.account                                        # a registered API account (client id, key id, PEM)
    handle.fault(status=429, retry_after="2")             # the next API request answers 429

The handle only speaks HTTP, so it works the same from any process.
"""

from __future__ import annotations

import subprocess as sp
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ApiAccount:
    """An API account as Apple Business shows it: client id, key id, and the downloaded private key (PEM)."""

    client_id: str
    key_id: str
    private_key: str

    @property
    def public_key(self) -> str:
        key = serialization.load_pem_private_key(self.private_key.encode(), password=None)
        return (
            key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )


def new_account() -> ApiAccount:
    """A fresh P-256 key pair and ids shaped like Apple's (``BUSINESSAPI.<uuid>``, a UUID key id)."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return ApiAccount(client_id=f"BUSINESSAPI.{uuid.uuid4()}", key_id=str(uuid.uuid4()), private_key=pem)


class BusinessSandboxHandle:
    """HTTP controls of a running sandbox; ``root_url`` is both the API base and the token host."""

    def __init__(self, root_url: str, *, account: ApiAccount | None = None):
        self.root_url = root_url.rstrip("/")
        self.token_url = self.root_url + "/auth/oauth2/token"
        self.http = requests.Session()
        self.account = account or new_account()
        self._process: sp.Popen | None = None

    def control(self, name: str, body: dict | None = None) -> dict:
        response = self.http.post(f"{self.root_url}/_sandbox/{name}", json=body or {}, timeout=30)
        response.raise_for_status()
        return response.json()

    def register(self, account: ApiAccount | None = None) -> ApiAccount:
        account = account or self.account
        self.control(
            "accounts", {"client_id": account.client_id, "key_id": account.key_id, "public_key": account.public_key}
        )
        return account

    def reset(self, *, people: int = 60, devices: int | None = None, name: str = "Example Corp") -> dict:
        """A fresh demo organisation (accounts stay registered); counters and faults cleared."""
        result = self.control("reset", {"people": people, "devices": devices, "name": name})
        self.control("options", {"requests_per_minute": None, "token_lifetime": 3600, "reject_reused_jti": False})
        return result

    def fault(self, *, status: int, path: str = "/v1/", times: int = 1, retry_after: str | None = None) -> None:
        self.control("faults", {"status": status, "path": path, "times": times, "retry_after": retry_after})

    def expire_tokens(self) -> None:
        self.control("expire-tokens")

    def options(self, **options) -> None:
        self.control("options", options)

    def people(self, *, upsert: dict | None = None, delete: list | None = None, groups: dict | None = None) -> None:
        self.control("people", {"upsert": upsert or {}, "delete": delete or [], "groups": groups or {}})

    def users(self) -> dict[str, dict]:
        return self.http.get(f"{self.root_url}/_sandbox/people", timeout=30).json()["users"]

    def counters(self) -> dict[str, int]:
        return self.http.get(f"{self.root_url}/_sandbox/counters", timeout=30).json()

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except sp.TimeoutExpired:
                self._process.kill()
                self._process.wait()


def start_process_business_sandbox(
    *, people: int = 60, requests_per_minute: int | None = None
) -> BusinessSandboxHandle:
    """``python -m vpp.business_sandbox`` on a free loopback port, its account registered.
    It exits with its parent."""
    with tempfile.TemporaryDirectory() as tmp:
        port_file = Path(tmp) / "port"
        argv = [sys.executable, "-m", "vpp.business_sandbox", "--port", "0", "--port-file", str(port_file),
                "--people", str(people), "--exit-with-parent"]  # fmt: skip
        if requests_per_minute:
            argv += ["--requests-per-minute", str(requests_per_minute)]
        process = sp.Popen(argv, cwd=ROOT, stdout=sp.DEVNULL)  # noqa: S603 - our own module
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("the Apple Business sandbox did not start")
            time.sleep(0.05)
        handle = BusinessSandboxHandle(f"http://127.0.0.1:{port_file.read_text().strip()}")
    handle._process = process
    handle.register()
    return handle
