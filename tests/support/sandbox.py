"""pytest plugin: the VPP sandbox over real HTTP (registered in tests/conftest.py).

- ``vpp_sandbox``: a handle (vpp.sandbox.testing.SandboxHandle) on a session-wide sandbox running
  as a child process (``python -m vpp.sandbox``) on a free 127.0.0.1 port, reset before each test. Reachable from other
  processes (e.g. a Celery worker subprocess) at ``.root_url``. Events finish at once
  (pending_seconds=0); change anything with ``.control(...)``.
  Attributes: .base_url (".../mdm/v2"), .root_url, .token, .mint_token(...), .control(**faults),
  .faults(), .counters(), .reset(), .users(), .state(what), .notifications(), .advance(),
  .accept_invitation(code), .revoke_token(), .expire_token(), .wait_for(predicate).
- ``vpp_sandbox_factory(subprocess=False, state_path=None, **options)``: a separate sandbox with
  its own start-up options (a thread, or a real child process); stopped after the test.
"""

from __future__ import annotations

import pytest

from vpp.apple.client import clear_service_config_cache
from vpp.sandbox.testing import TEST_OPTIONS, SandboxHandle, start_process_sandbox, start_thread_sandbox


@pytest.fixture(scope="session")
def _vpp_sandbox_session():
    # A child process, not a thread: time-machine in a test must not move the sandbox's clock, and the
    # sandbox must not compete for this process's GIL in timing-sensitive client tests.
    handle = start_process_sandbox(**TEST_OPTIONS)
    yield handle
    handle.stop()


@pytest.fixture
def vpp_sandbox(_vpp_sandbox_session) -> SandboxHandle:
    _vpp_sandbox_session.reset()
    # VppClient caches Service Config per base URL for 5 minutes; this sandbox keeps its URL for
    # the whole session while tests change its limits, so every test starts with a fresh read.
    clear_service_config_cache()
    return _vpp_sandbox_session


@pytest.fixture
def vpp_sandbox_factory():
    started: list[SandboxHandle] = []

    def start(*, subprocess: bool = False, state_path: str | None = None, **options) -> SandboxHandle:
        starter = start_process_sandbox if subprocess else start_thread_sandbox
        handle = starter(state_path=state_path, **{**TEST_OPTIONS, **options})
        started.append(handle)
        return handle

    yield start
    for handle in started:
        handle.stop()


def store_sandbox_token(sandbox: SandboxHandle, *, org: str = "Sandbox Org"):
    """Point the console at the sandbox with its token stored directly (no Apple check, no claim)."""
    from vpp import secrets
    from vpp.models import VppServerSetting

    setting = VppServerSetting.load()
    setting.content_token_encrypted = secrets.encrypt(sandbox.token)
    setting.api_base_url = sandbox.base_url
    setting.token_org_name = org
    setting.save()
    return setting
