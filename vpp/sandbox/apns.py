"""A fake APNs (Apple Push Notification service) for tests and the demo.

Speaks HTTP/2 cleartext with prior knowledge (what ``httpx.Client(http1=False, http2=True)``
sends) and, on the same port, HTTP/1.1 for a browser: hypercorn tells them apart by the
HTTP/2 connection preface. Behaves like Apple's provider API
(https://developer.apple.com/documentation/usernotifications/sending-notification-requests-to-apns
and ".../handling-notification-responses-from-apns"):

- ``POST /3/device/<token>`` with ``apns-topic``, ``apns-push-type``, ``apns-priority``,
  ``apns-expiration``, ``apns-id``, ``apns-collapse-id`` and ``authorization: bearer <JWT>``.
- The provider JWT is checked as ES256 against the configured public key: header ``kid``,
  claims ``iss`` (team id) and ``iat`` (older than an hour → 403 ExpiredProviderToken).
- 400 BadDeviceToken / MissingTopic / BadPriority / ..., 413 PayloadTooLarge (> 4096 bytes),
  410 Unregistered with a millisecond ``timestamp`` for tokens marked unregistered, 200 with
  ``apns-id`` otherwise. Every request is recorded (in memory, optionally a JSON file).

Control and inspection (not Apple's; JSON unless noted):
- ``GET /_apns/pushes`` recorded pushes, newest last; ``DELETE /_apns/pushes`` forgets them.
- ``POST /_apns/unregister`` ``{"token": "..."}`` → that token answers 410 from now on.
- ``POST /_apns/faults`` ``{"status": 503, "reason": "ServiceUnavailable", "count": 2,
  "retry_after": 1}`` → the next ``count`` pushes get that answer (``count`` 0 clears).
- ``GET /_apns/stats`` counters, including how many distinct provider tokens were seen.
- ``GET /_apns/`` an HTML list of pushes whose invitation links can be opened (demo).

Run it with ``manage.py fake_apns`` or, in-process, ``FakeApnsServer(state).start()``.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import os
import re
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

logger = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 4096  # Apple's limit for alert (non-VoIP) notifications
PROVIDER_TOKEN_MAX_AGE = 3600  # Apple rejects provider tokens older than one hour
# Device tokens are hex strings; today 64 characters (32 bytes), but Apple says they may grow.
_DEVICE_TOKEN_RE = re.compile(r"^[0-9a-fA-F]{64,200}$")
_APNS_ID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_PUSH_TYPES = {"alert", "background", "location", "voip", "complication", "fileprovider", "mdm", "liveactivity"}
# Payload keys the demo list page shows as an openable link.
LINK_KEYS = ("invitationURL", "url", "link")
_MAX_RECORDED = 1000


@dataclass
class RecordedPush:
    apns_id: str
    device_token: str
    topic: str
    push_type: str
    priority: str
    expiration: str
    collapse_id: str
    payload: Any  # the decoded JSON, or the raw text when it was not JSON
    status: int
    reason: str
    received_at: float

    @property
    def link(self) -> str | None:
        if isinstance(self.payload, dict):
            for key in LINK_KEYS:
                value = self.payload.get(key)
                if isinstance(value, str):
                    return value
        return None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "link": self.link}


@dataclass
class _Fault:
    status: int
    reason: str
    remaining: int
    retry_after: int | None = None


@dataclass
class FakeApnsState:
    """What the fake knows: the provider key it trusts, unregistered tokens, recorded pushes.

    ``record_file``, when set, gets the recorded pushes as JSON after every push so another
    process (the console's demo page) can read them.
    """

    key_id: str
    team_id: str
    public_key: EllipticCurvePublicKey
    topic: str | None = None  # when set, any other apns-topic gets 400 TopicDisallowed
    record_file: Path | None = None
    unregistered: dict[str, int] = field(default_factory=dict)  # token → unix ms
    pushes: list[RecordedPush] = field(default_factory=list)
    provider_tokens_seen: set[str] = field(default_factory=set)
    requests: int = 0
    _fault: _Fault | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_pem(cls, *, key_id: str, team_id: str, pem: str | bytes, **kwargs: Any) -> FakeApnsState:
        """Trust the public half of PEM, which may be the provider's .p8 private key itself."""
        data = pem.encode() if isinstance(pem, str) else pem
        if b"PRIVATE KEY" in data:
            public_key = load_pem_private_key(data, password=None).public_key()
        else:
            public_key = load_pem_public_key(data)
        if not isinstance(public_key, EllipticCurvePublicKey):
            raise ValueError("the fake APNs needs an EC (P-256) key")
        return cls(key_id=key_id, team_id=team_id, public_key=public_key, **kwargs)

    # --- control ---------------------------------------------------------------------
    def unregister(self, token: str, *, at_ms: int | None = None) -> None:
        with self._lock:
            self.unregistered[token.lower()] = at_ms if at_ms is not None else int(time.time() * 1000)

    def set_fault(self, *, status: int, reason: str, count: int = 1, retry_after: int | None = None) -> None:
        with self._lock:
            self._fault = _Fault(status, reason, count, retry_after) if count > 0 else None

    def clear(self, *, unregistered: bool = False) -> None:
        """Forget recorded pushes, counters and faults (and unregistered tokens if asked)."""
        with self._lock:
            if unregistered:
                self.unregistered.clear()
            self.pushes.clear()
            self.provider_tokens_seen.clear()
            self.requests = 0
            self._fault = None
        self._write_record_file()

    def accepted(self) -> list[RecordedPush]:
        with self._lock:
            return [p for p in self.pushes if p.status == 200]

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self.requests,
                "accepted": sum(1 for p in self.pushes if p.status == 200),
                "rejected": sum(1 for p in self.pushes if p.status != 200),
                "provider_tokens": len(self.provider_tokens_seen),
                "unregistered": len(self.unregistered),
            }

    # --- the APNs rules ------------------------------------------------------------------
    def _take_fault(self) -> _Fault | None:
        with self._lock:
            fault = self._fault
            if fault is None:
                return None
            fault.remaining -= 1
            if fault.remaining <= 0:
                self._fault = None
            return fault

    def check_provider_token(self, authorization: str | None, *, now: float | None = None) -> str | None:
        """None when the bearer token is good, else Apple's 403 reason."""
        if not authorization:
            return "MissingProviderToken"
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return "MissingProviderToken"
        token = token.strip()
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            return "InvalidProviderToken"
        if header.get("alg") != "ES256" or header.get("kid") != self.key_id:
            return "InvalidProviderToken"
        try:
            # iat is checked by hand below: Apple's rule is "at most one hour old".
            claims = jwt.decode(
                token, self.public_key, algorithms=["ES256"], options={"verify_iat": False, "require": ["iss", "iat"]}
            )
        except jwt.InvalidTokenError:
            return "InvalidProviderToken"
        iat = claims.get("iat")
        if claims.get("iss") != self.team_id or not isinstance(iat, int | float):
            return "InvalidProviderToken"
        now = time.time() if now is None else now
        if iat > now + 60:  # minted in the future: a clock problem on the provider side
            return "InvalidProviderToken"
        if now - iat > PROVIDER_TOKEN_MAX_AGE:
            return "ExpiredProviderToken"
        with self._lock:
            self.provider_tokens_seen.add(token)
        return None

    def handle_push(self, device_token: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], dict]:
        """Apple's answer for one push: (status, response headers, JSON body or {})."""
        with self._lock:
            self.requests += 1
        apns_id = headers.get("apns-id") or str(uuid.uuid4()).upper()
        status, reason, extra = self._verdict(device_token, headers, body, apns_id)
        self._record(device_token, headers, body, apns_id, status, reason)
        response_headers = {"apns-id": apns_id}
        if status == 200:
            return 200, response_headers, {}
        if "retry_after" in extra:
            response_headers["retry-after"] = str(extra.pop("retry_after"))
        return status, response_headers, {"reason": reason, **extra}

    def _verdict(self, device_token: str, headers: dict[str, str], body: bytes, apns_id: str):
        problem = self.check_provider_token(headers.get("authorization"))
        if problem:
            return 403, problem, {}
        fault = self._take_fault()
        if fault:
            extra = {"retry_after": fault.retry_after} if fault.retry_after is not None else {}
            return fault.status, fault.reason, extra
        topic = headers.get("apns-topic", "")
        if not topic:
            return 400, "MissingTopic", {}
        if self.topic and topic != self.topic:
            return 400, "TopicDisallowed", {}
        if headers.get("apns-push-type", "alert") not in _PUSH_TYPES:
            return 400, "InvalidPushType", {}
        if headers.get("apns-priority", "10") not in {"1", "5", "10"}:
            return 400, "BadPriority", {}
        if not headers.get("apns-expiration", "0").isdigit():
            return 400, "BadExpirationDate", {}
        if headers.get("apns-id") and not _APNS_ID_RE.match(apns_id):
            return 400, "BadMessageId", {}
        if not device_token:
            return 400, "MissingDeviceToken", {}
        if not _DEVICE_TOKEN_RE.match(device_token):
            return 400, "BadDeviceToken", {}
        if not body:
            return 400, "PayloadEmpty", {}
        if len(body) > MAX_PAYLOAD_BYTES:
            return 413, "PayloadTooLarge", {}
        with self._lock:
            unregistered_at = self.unregistered.get(device_token.lower())
        if unregistered_at is not None:
            return 410, "Unregistered", {"timestamp": unregistered_at}
        return 200, "", {}

    def _record(self, device_token, headers, body, apns_id, status, reason) -> None:
        try:
            payload: Any = json.loads(body) if body else None
        except ValueError:
            payload = body.decode("utf-8", "replace")
        push = RecordedPush(
            apns_id=apns_id,
            device_token=device_token,
            topic=headers.get("apns-topic", ""),
            push_type=headers.get("apns-push-type", ""),
            priority=headers.get("apns-priority", ""),
            expiration=headers.get("apns-expiration", ""),
            collapse_id=headers.get("apns-collapse-id", ""),
            payload=payload,
            status=status,
            reason=reason,
            received_at=time.time(),
        )
        with self._lock:
            self.pushes.append(push)
            del self.pushes[:-_MAX_RECORDED]
        self._write_record_file()

    def _write_record_file(self) -> None:
        if self.record_file is None:
            return
        with self._lock:
            data = json.dumps([p.as_dict() for p in self.pushes], indent=1)
        self.record_file.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so a reader never sees half a file.
        fd, tmp = tempfile.mkstemp(dir=self.record_file.parent, prefix=".apns-")
        with os.fdopen(fd, "w") as fh:
            fh.write(data)
        os.replace(tmp, self.record_file)


def read_recorded_pushes(path: Path) -> list[dict[str, Any]]:
    """Recorded pushes from a fake's record file (another process), newest last."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return []


# --- ASGI app ---------------------------------------------------------------------------------

Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


class FakeApnsApp:
    def __init__(self, state: FakeApnsState) -> None:
        self.state = state

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        # Read the whole body before answering: otherwise hypercorn's h2 protocol drops the
        # connection on a later request (KeyError inside hypercorn, "Server disconnected").
        body = await _read_body(receive)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        status, response_headers, content, content_type = self._route(scope["method"], scope["path"], headers, body)
        raw_headers = [(k.encode(), v.encode()) for k, v in response_headers.items()]
        if content:
            raw_headers += [(b"content-type", content_type), (b"content-length", str(len(content)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": content})

    def _route(self, method: str, path: str, headers: dict[str, str], body: bytes):
        if path.startswith("/3/device/"):
            if method != "POST":
                return _json(405, {"reason": "MethodNotAllowed"})
            status, response_headers, payload = self.state.handle_push(path[len("/3/device/") :], headers, body)
            content = json.dumps(payload).encode() if payload else b""
            return status, response_headers, content, b"application/json"
        if path.startswith("/_apns/"):
            return self._control(method, path, body)
        return _json(404, {"reason": "BadPath"})

    def _control(self, method: str, path: str, body: bytes):
        state = self.state
        if path == "/_apns/pushes" and method == "GET":
            return _json(200, {"pushes": [p.as_dict() for p in list(state.pushes)]})
        if path == "/_apns/pushes" and method == "DELETE":
            state.clear()
            return _json(200, {"ok": True})
        if path == "/_apns/stats" and method == "GET":
            return _json(200, state.stats())
        if path in ("/_apns/unregister", "/_apns/faults") and method == "POST":
            try:
                data = json.loads(body or b"{}")
                if path == "/_apns/unregister":
                    state.unregister(str(data["token"]), at_ms=data.get("timestamp"))
                else:
                    state.set_fault(
                        status=int(data["status"]),
                        reason=str(data.get("reason", "")),
                        count=int(data.get("count", 1)),
                        retry_after=data.get("retry_after"),
                    )
            except (ValueError, KeyError, TypeError) as exc:
                return _json(400, {"error": f"bad control request: {exc}"})
            return _json(200, {"ok": True})
        if path == "/_apns/" and method == "GET":
            return 200, {}, render_pushes_page(p.as_dict() for p in list(state.pushes)).encode(), b"text/html"
        return _json(404, {"error": "unknown control endpoint"})


def _json(status: int, data: dict):
    return status, {}, json.dumps(data).encode(), b"application/json"


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def render_pushes_page(pushes) -> str:
    """A plain HTML list of recorded pushes, newest first, each invitation link openable."""
    rows = []
    for push in reversed(list(pushes)):
        payload = push.get("payload")
        alert = payload.get("aps", {}).get("alert", "") if isinstance(payload, dict) else ""
        title = alert.get("title", "") if isinstance(alert, dict) else str(alert)
        link = push.get("link")
        link_html = f'<a href="{html.escape(link)}">{html.escape(link)}</a>' if link else ""
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(push.get("received_at", 0)))
        rows.append(
            f"<tr><td>{when}</td><td>{push.get('status')} {html.escape(push.get('reason') or '')}</td>"
            f"<td><code>{html.escape(push.get('device_token', '')[:16])}…</code></td>"
            f"<td>{html.escape(title)}</td><td>{link_html}</td></tr>"
        )
    body = "".join(rows) or '<tr><td colspan="5">No pushes yet.</td></tr>'
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Fake APNs — pushes</title></head><body>"
        "<h1>Fake APNs: recorded pushes</h1>"
        "<table><thead><tr><th>Received (UTC)</th><th>Answer</th><th>Device token</th><th>Title</th>"
        f"<th>Invitation link</th></tr></thead><tbody>{body}</tbody></table></body></html>"
    )


# --- the demo key -------------------------------------------------------------------------------

DEMO_TEAM_ID = "KMDEMOTEAM"
DEMO_TOPIC = "com.kmconsole.agent"


@dataclass(frozen=True)
class DemoApnsKey:
    path: Path  # the .p8 file
    key_id: str
    team_id: str
    topic: str

    def pem(self) -> str:
        return self.path.read_text()

    def env(self, apns_url: str) -> dict[str, str]:
        """Environment for console processes pushing to the fake at ``apns_url``."""
        return {
            "APNS_HOST": apns_url,
            "APNS_KEY_FILE": str(self.path),
            "APNS_KEY_ID": self.key_id,
            "APNS_TEAM_ID": self.team_id,
            "APNS_TOPIC": self.topic,
        }


def ensure_demo_apns_key(var_dir: Path | None = None) -> DemoApnsKey:
    """A throwaway P-256 .p8 key under var/apns/ for ``make run`` (made once, then reused)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    if var_dir is None:
        from django.conf import settings

        var_dir = settings.VAR_DIR
    directory = Path(var_dir) / "apns"
    existing = sorted(directory.glob("AuthKey_*.p8"))
    if existing:
        path = existing[0]
    else:
        directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        key_id = uuid.uuid4().hex[:10].upper()
        path = directory / f"AuthKey_{key_id}.p8"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
    # Apple names downloaded keys AuthKey_<KEY ID>.p8; we do the same and read the id back.
    key_id = path.stem.removeprefix("AuthKey_")
    return DemoApnsKey(path=path, key_id=key_id, team_id=DEMO_TEAM_ID, topic=DEMO_TOPIC)


_OPERATOR_APNS_VARS = ("APNS_HOST", "APNS_KEY", "APNS_KEY_FILE", "APNS_KEY_ID", "APNS_TEAM_ID", "APNS_TOPIC")


def demo_apns_env(apns_url: str, *, environ=None, var_dir: Path | None = None) -> dict[str, str]:
    """APNS_* for console processes (web, worker) pushing to the sandbox's fake at ``apns_url``.

    Empty when the operator configured APNs in the environment: a demo never overrides a real setup.
    """
    environ = os.environ if environ is None else environ
    if any(environ.get(name) for name in _OPERATOR_APNS_VARS):
        return {}
    return ensure_demo_apns_key(var_dir).env(apns_url)


def demo_state(var_dir: Path | None = None, *, record_file: Path | None = None) -> FakeApnsState:
    """A fake that trusts the demo key and accepts only the demo topic."""
    demo = ensure_demo_apns_key(var_dir)
    return FakeApnsState.from_pem(
        key_id=demo.key_id, team_id=demo.team_id, pem=demo.pem(), topic=demo.topic, record_file=record_file
    )


# --- running it ---------------------------------------------------------------------------------


def _hypercorn_config(sock: socket.socket):
    from hypercorn.config import Config

    config = Config()
    # Hand hypercorn the already-bound socket: port 0 gives a free port we know up front.
    config.bind = [f"fd://{sock.detach()}"]
    config.accesslog = None
    config.errorlog = logger
    config.keep_alive_timeout = 3600  # APNs keeps provider connections open for a long time
    return config


def bind_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)  # connections made before hypercorn's loop runs wait in the backlog
    return sock


class FakeApnsServer:
    """The fake in a background thread (tests, or inside another process such as the sandbox)."""

    def __init__(self, state: FakeApnsState, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = state
        self.host = host
        self._requested_port = port
        self.port: int | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> FakeApnsServer:
        sock = bind_socket(self.host, self._requested_port)
        self.port = sock.getsockname()[1]
        config = _hypercorn_config(sock)
        self._thread = threading.Thread(target=self._run, args=(config,), name="fake-apns", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error:
            raise RuntimeError("fake APNs failed to start") from self._error
        return self

    def _run(self, config) -> None:
        from hypercorn.asyncio import serve

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._ready.set()
            # shutdown_trigger= keeps hypercorn from installing signal handlers (main thread only).
            await serve(FakeApnsApp(self.state), config, shutdown_trigger=self._stop.wait)

        try:
            asyncio.run(main())
        except Exception as exc:  # noqa: BLE001 - reported by start(); a thread has nobody else to tell
            self._error = exc
            self._ready.set()

    def stop(self) -> None:
        if self._loop and self._stop and self._thread and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)

    def __enter__(self) -> FakeApnsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_for_sandbox(
    *, host: str = "127.0.0.1", port: int = 0, key_dir: Path | str = "var", port_file: str | None = None
) -> FakeApnsServer:
    """The fake inside the VPP sandbox process (``vpp_sandbox --apns-port``), trusting the demo key.

    Pushes are also written to KEY_DIR/apns-pushes.json (for the console) and listed by the
    sandbox at ``GET /_sandbox/pushes``; ``POST /_sandbox/apns/unregister {"token": ...}``
    makes a device token answer 410.
    """
    from vpp.sandbox.registry import register_control_route

    state = demo_state(Path(key_dir), record_file=Path(key_dir) / "apns-pushes.json")
    server = FakeApnsServer(state, host=host, port=port).start()
    if port_file:
        Path(port_file).write_text(str(server.port))
    register_control_route(
        "GET",
        "pushes",
        lambda query, body: {"apns_url": server.base_url, "pushes": [p.as_dict() for p in state.pushes]},
    )
    register_control_route("POST", "apns/unregister", lambda query, body: _unregister(state, body))
    return server


def _unregister(state: FakeApnsState, body: Any) -> dict[str, bool]:
    if not isinstance(body, dict) or not isinstance(body.get("token"), str):
        raise ValueError('expected {"token": "<device token>"}')
    state.unregister(body["token"])
    return {"ok": True}


def serve_forever(state: FakeApnsState, *, host: str = "127.0.0.1", port: int = 0, on_bound=None) -> None:
    """Run the fake in the foreground (``manage.py fake_apns``); Ctrl-C or SIGTERM stops it."""
    from hypercorn.asyncio import serve

    sock = bind_socket(host, port)
    if on_bound:
        on_bound(sock.getsockname()[1])
    asyncio.run(serve(FakeApnsApp(state), _hypercorn_config(sock)))
