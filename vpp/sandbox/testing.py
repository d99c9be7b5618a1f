"""Start a sandbox from Python (tests, bench scripts) and drive it through its control endpoints.

    with start_sandbox(pending_seconds=0) as sandbox:       # a thread in this process
        requests.get(sandbox.base_url + "/service/config")
    with start_sandbox(subprocess=True, state_path=p) as sb:  # a real `python -m vpp.sandbox` process
        ...

The handle only speaks HTTP, so it works the same for both kinds and from any process.
"""

from __future__ import annotations

import contextlib
import os
import subprocess as sp
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from vpp.sandbox.options import Options
from vpp.sandbox.server import SandboxServer
from vpp.sandbox.service import Sandbox
from vpp.sandbox.tokens import DEFAULT_LOCATION, DEFAULT_ORG, mint_token

ROOT = Path(__file__).resolve().parents[2]

# Fast defaults for tests: events finish at once, notification retries don't linger.
TEST_OPTIONS: dict[str, Any] = {"pending_seconds": 0.0, "notification_retry_seconds": 0.05}


class SandboxHandle:
    def __init__(self, root_url: str, *, org: str = DEFAULT_ORG, location: str = DEFAULT_LOCATION):
        self.root_url = root_url.rstrip("/")
        self.base_url = self.root_url + "/mdm/v2"
        self.org, self.location = org, location
        self.token = mint_token(org=org, location=location)
        self.http = requests.Session()
        self._stopper = None

    # --- tokens --------------------------------------------------------------------------
    def mint_token(
        self,
        *,
        expires_in_days: float = 365,
        expired: bool = False,
        org: str | None = None,
        location: str | None = None,
    ) -> str:
        return mint_token(
            org=org or self.org, location=location or self.location, expires_in_days=expires_in_days, expired=expired
        )

    def revoke_token(self, token: str | None = None) -> None:
        self.control(revoke_token=token or self.token)

    def expire_token(self, token: str | None = None) -> None:
        self.control(expire_token=token or self.token)

    def claim_as_other_mdm(self, *, name: str = "Other MDM", token: str | None = None) -> dict[str, Any]:
        """Another device management service writes its own mdmInfo with this token, as it would
        (``POST /mdm/v2/client/config``, over HTTP); every later answer for the unit names it."""
        body = {"mdmInfo": {"id": f"other-{name.lower().replace(' ', '-')}", "name": name, "metadata": "elsewhere"}}
        response = self.http.post(
            f"{self.base_url}/client/config",
            json=body,
            headers={"Authorization": f"Bearer {token or self.token}"},
            timeout=10,
        )
        response.raise_for_status()
        return response.json()

    # --- control -------------------------------------------------------------------------
    def _call(self, method: str, name: str, json: Any = None, params: dict | None = None) -> Any:
        response = self.http.request(method, f"{self.root_url}/_sandbox/{name}", json=json, params=params, timeout=10)
        if response.status_code != 200:
            raise RuntimeError(f"sandbox control {method} {name}: {response.status_code} {response.text}")
        return response.json()

    def control(self, **faults: Any) -> dict[str, Any]:
        """Change options/faults at run time, e.g. ``control(page_size=2, fail_next=1, retry_after=3)``."""
        return self._call("POST", "faults", faults)

    def faults(self) -> dict[str, Any]:
        return self._call("GET", "faults")

    def counters(self) -> dict[str, Any]:
        return self._call("GET", "counters")

    def reset(self, *, state: bool = True, faults: bool = True, counters: bool = True) -> None:
        self._call("POST", "reset", {"state": state, "faults": faults, "counters": counters})

    def advance(self, *, force: bool = True) -> int:
        """Finish pending events now (FORCE: even those whose PENDING time is not over)."""
        return self._call("POST", "advance", {"force": force})["finished"]

    def users(self, location: str | None = None) -> list[dict[str, Any]]:
        """Every user record (history rows included) with recordId, status, inviteCode, idHash, ..."""
        return self.state("users", location)

    def state(self, what: str, location: str | None = None) -> list[dict[str, Any]]:
        """what: users | assignments | assets | events | locations."""
        params = {"location": location} if location else None
        return self._call("GET", f"state/{what}", params=params)[what]

    def notifications(self) -> list[dict[str, Any]]:
        return self._call("GET", "notifications")["notifications"]

    def accept_invitation(self, invite_code: str, apple_account: str = "") -> dict[str, Any]:
        return self._call("POST", "invitations/accept", {"inviteCode": invite_code, "appleAccount": apple_account})

    def wait_for(self, predicate, *, timeout: float = 10.0, interval: float = 0.02):
        """Poll PREDICATE() until truthy (for background work such as notification delivery)."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value or time.monotonic() > deadline:
                return value
            time.sleep(interval)

    def stop(self) -> None:
        if self._stopper:
            self._stopper()
            self._stopper = None


def start_thread_sandbox(*, state_path: str | None = None, **options: Any) -> SandboxHandle:
    server = SandboxServer(Sandbox(Options().updated(options), state_path=state_path)).start()
    handle = SandboxHandle(server.root_url)
    handle.server = server
    handle._stopper = server.stop
    return handle


def start_process_sandbox(*, state_path: str | None = None, **options: Any) -> SandboxHandle:
    """A real ``python -m vpp.sandbox`` child on a free port; ``.stop()`` sends SIGTERM (state is flushed)."""
    import json

    port_file = Path(tempfile.mkdtemp(prefix="vpp-sandbox-")) / "port"
    command = [sys.executable, "-m", "vpp.sandbox", "--port", "0", "--port-file", str(port_file), "--exit-with-parent"]
    command += ["--state", state_path or "", "--options", json.dumps(options)]
    log_path = port_file.with_name("sandbox.log")
    with open(log_path, "wb") as log_file:  # a file, not a pipe: a chatty child never blocks on it
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        process = sp.Popen(command, cwd=ROOT, stdout=log_file, stderr=sp.STDOUT, env=env)  # noqa: S603
    deadline = time.monotonic() + 15
    while not (port_file.exists() and port_file.read_text()):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"sandbox did not start: {log_path.read_text()}")
        time.sleep(0.02)
    handle = SandboxHandle(f"http://127.0.0.1:{port_file.read_text()}")
    handle.wait_for(lambda: _healthy(handle), timeout=10)
    handle.process = process

    def stop() -> None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except sp.TimeoutExpired:
            process.kill()
            process.wait()

    handle._stopper = stop
    return handle


def _healthy(handle: SandboxHandle) -> bool:
    try:
        return handle.http.get(handle.root_url + "/_sandbox/health", timeout=1).ok
    except requests.RequestException:
        return False


@contextlib.contextmanager
def start_sandbox(*, subprocess: bool = False, state_path: str | None = None, **options: Any):
    starter = start_process_sandbox if subprocess else start_thread_sandbox
    handle = starter(state_path=state_path, **options)
    try:
        yield handle
    finally:
        handle.stop()
