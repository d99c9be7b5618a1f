"""A loopback TCP proxy a test can cut and restore, to take a service (Redis) away from a worker.

``TcpProxy(target).start()`` listens on a free loopback port and forwards every connection to
``target``: a port on 127.0.0.1, or the path of a Unix socket (the suite's private Redis).
``TcpProxy.for_redis(url)`` gives the proxy and the ``redis://`` URL that goes through it.
``cut()`` closes every open connection and refuses new ones (as a
Redis that went down); ``restore()`` accepts again. Only the processes pointed at the proxy see
the outage; the shared Redis itself is never touched.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class TcpProxy:
    def __init__(self, target: int | str):
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = threading.Event()
        self.up.set()
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def for_redis(cls, url: str) -> tuple[TcpProxy, str]:
        """A started proxy in front of the Redis at ``url`` (redis:// or unix://) and the URL through it."""
        from urllib.parse import parse_qs, urlsplit

        parts = urlsplit(url)
        if parts.scheme == "unix":
            db = parse_qs(parts.query).get("db", ["0"])[0]
            proxy = cls(parts.path)
        else:
            db = (parts.path or "/0").lstrip("/") or "0"
            proxy = cls(parts.port or 6379)
        return proxy.start(), f"redis://127.0.0.1:{proxy.port}/{db}"

    def start(self) -> TcpProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up.is_set():
                client.close()  # down: the connection is dropped at once
                continue
            try:
                if isinstance(self.target, str):
                    upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    upstream.connect(self.target)
                else:
                    upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def cut(self) -> None:
        """Drop every connection and refuse new ones until ``restore()``."""
        self.up.clear()
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def restore(self) -> None:
        self.up.set()

    def close(self) -> None:
        self._closed = True
        self.cut()
        self.listener.close()
