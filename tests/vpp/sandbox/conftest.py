"""Fixtures for the sandbox's own tests (the helpers are in tests/support/sandbox.py)."""

from __future__ import annotations

import pytest

from tests.support.sandbox import Api, Receiver


@pytest.fixture
def api(vpp_sandbox) -> Api:
    return Api(vpp_sandbox)


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()
