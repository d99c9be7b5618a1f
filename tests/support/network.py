"""The test suite's network guard: sockets may connect to loopback (and Unix sockets) only."""

from __future__ import annotations

import socket

real_connect = socket.socket.connect


def loopback_only(self, address):
    """A ``socket.connect`` that refuses anything outside loopback (installed by tests/conftest.py)."""
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and not (
        host.startswith("127.") or host in ("localhost", "::1") or host.startswith("/") or self.family == socket.AF_UNIX
    ):
        raise RuntimeError(f"tests must not reach the network (tried {host!r})")
    return real_connect(self, address)
