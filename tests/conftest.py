"""Shared fixtures. Tests never reach the internet: anything outside loopback is refused.

Helpers live in tests/support/ (imported by the conftest.py files and the tests); fixtures stay here.
"""

from __future__ import annotations

import os
import socket

import pytest

from vpp.apple.client import clear_service_config_cache
from vpp.sandbox.testing import TEST_OPTIONS, SandboxHandle, start_process_sandbox, start_thread_sandbox

# Plain asserts in the helpers report their values as they do in tests. Registered before any
# of them is imported: this file and the fixtures below import tests.support lazily.
pytest.register_assert_rewrite("tests.support")

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs an event loop


@pytest.fixture(autouse=True, scope="session")
def _no_network():
    from tests.support.network import loopback_only, real_connect

    socket.socket.connect = loopback_only
    yield
    socket.socket.connect = real_connect


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    # PBKDF2 costs ~0.5 s per login on a shared CI core; tests only need a working hash.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# --------------------------------------------------------------------------- the VPP sandbox
# ``vpp_sandbox``: a handle (vpp.sandbox.testing.SandboxHandle) on a session-wide sandbox running
# as a child process (``python -m vpp.sandbox``) on a free 127.0.0.1 port, reset before each test.
# Reachable from other processes (e.g. a Celery worker subprocess) at ``.root_url``. Events finish
# at once (pending_seconds=0); change anything with ``.control(...)``.
# Attributes: .base_url (".../mdm/v2"), .root_url, .token, .mint_token(...), .control(**faults),
# .faults(), .counters(), .reset(), .users(), .state(what), .notifications(), .advance(),
# .accept_invitation(code), .revoke_token(), .expire_token(), .wait_for(predicate).
# ``vpp_sandbox_factory(subprocess=False, state_path=None, **options)``: a separate sandbox with
# its own start-up options (a thread, or a real child process); stopped after the test.
# Helpers (store_sandbox_token, ...) are in tests/support/sandbox.py.


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


# --------------------------------------------------------------------------- the Apple Business sandbox
# ``business_sandbox``: a handle (vpp.business_sandbox.testing.BusinessSandboxHandle) on a session-wide
# Apple Business sandbox running as a child process (``python -m vpp.business_sandbox``), reset to a
# 60-person demo organisation before each test, its API account registered (``.account``).
# Controls: .reset(people=, devices=), .fault(status=, retry_after=, times=, path=), .expire_tokens(),
# .options(requests_per_minute=, token_lifetime=), .people(upsert=, delete=, groups=), .users(), .counters().


@pytest.fixture(scope="session")
def _business_sandbox_session():
    from vpp.business_sandbox.testing import start_process_business_sandbox

    handle = start_process_business_sandbox()
    yield handle
    handle.stop()


@pytest.fixture
def business_sandbox(_business_sandbox_session):
    _business_sandbox_session.reset()
    return _business_sandbox_session
