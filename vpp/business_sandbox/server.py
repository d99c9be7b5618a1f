"""HTTP surface of the Apple Business sandbox: ``/auth/oauth2/token``, ``/v1/...`` and the
``/_sandbox/`` controls. Stdlib ``ThreadingHTTPServer``; ``BusinessSandbox`` holds the state.

Controls (JSON bodies):
  POST /_sandbox/reset     {"people": N, "name": "...", "devices": N}  a fresh demo organisation
  POST /_sandbox/accounts  {"client_id", "key_id", "public_key"}       register an API account
  POST /_sandbox/faults    {"status", "path"?, "times"?, "retry_after"?}  answer the next requests so
  POST /_sandbox/expire-tokens                                         every access token expires now
  POST /_sandbox/options   {"requests_per_minute"?, "token_lifetime"?, "reject_reused_jti"?}
  POST /_sandbox/people    {"upsert": {id: attributes}, "delete": [ids], "groups": {gid: [member ids]}}
  GET  /_sandbox/counters, GET /_sandbox/people
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from vpp.business_sandbox.seed import demo_organisation
from vpp.business_sandbox.service import ApiError, BusinessSandbox, Fault, api_error

log = logging.getLogger(__name__)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    sandbox: BusinessSandbox

    def log_message(self, *args) -> None:  # quiet: the console and tests have their own logs
        pass

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _reply(self, status: int, data, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _base(self) -> str:
        return f"http://{self.headers.get('Host') or '127.0.0.1'}"

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        self._body()
        try:
            if parts.path.startswith("/v1/"):
                if "json" not in (self.headers.get("Accept") or "application/json"):
                    raise api_error(406, "NOT_ACCEPTABLE", "Not acceptable", "Accept must be application/json.")
                data = self.sandbox.api(
                    parts.path.rstrip("/"), query, self.headers.get("Authorization") or "", self._base()
                )
                return self._reply(200, data)
            if parts.path == "/_sandbox/counters":
                return self._reply(200, dict(self.sandbox.counters))
            if parts.path == "/_sandbox/people":
                with self.sandbox.lock:
                    return self._reply(200, {"name": self.sandbox.org.name, "users": self.sandbox.org.users})
            raise api_error(404, "NOT_FOUND", "The specified resource does not exist", f"No resource at {parts.path}.")
        except ApiError as exc:
            self._reply(exc.status, exc.body, exc.headers)

    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        body = self._body()
        try:
            if parts.path in ("/auth/oauth2/token", "/auth/oauth2/v2/token"):
                params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                params.update({k: v[-1] for k, v in parse_qs(body.decode(errors="replace")).items()})
                return self._reply(200, self.sandbox.issue_token(params))
            if parts.path.startswith("/_sandbox/"):
                return self._reply(200, self._control(parts.path.removeprefix("/_sandbox/"), json.loads(body or b"{}")))
            raise api_error(405, "METHOD_NOT_ALLOWED", "Method not allowed", "The API is read-only here.")
        except ApiError as exc:
            self._reply(exc.status, exc.body, exc.headers)
        except (ValueError, KeyError, TypeError) as exc:
            self._reply(400, {"error": f"bad control request: {exc}"})

    def _control(self, name: str, data: dict) -> dict:
        sandbox = self.sandbox
        if name == "reset":
            sandbox.reset()
            org = demo_organisation(int(data.get("people", 60)), name=data.get("name", "Example Corp"),
                                    devices=data.get("devices"))  # fmt: skip
            with sandbox.lock:
                sandbox.org = org
            return {"people": len(org.users), "devices": len(org.devices)}
        if name == "accounts":
            sandbox.register_account(data["client_id"], data["key_id"], data["public_key"])
            return {"ok": True}
        if name == "faults":
            sandbox.add_fault(Fault(status=int(data["status"]), path=data.get("path", "/v1/"),
                                    times=int(data.get("times", 1)), retry_after=data.get("retry_after")))  # fmt: skip
            return {"ok": True}
        if name == "expire-tokens":
            sandbox.expire_tokens()
            return {"ok": True}
        if name == "options":
            with sandbox.lock:
                if "requests_per_minute" in data:
                    sandbox.requests_per_minute = data["requests_per_minute"]
                    sandbox._window.clear()
                if "token_lifetime" in data:
                    sandbox.token_lifetime = int(data["token_lifetime"])
                if "reject_reused_jti" in data:
                    sandbox.reject_reused_jti = bool(data["reject_reused_jti"])
            return {"ok": True}
        if name == "people":
            with sandbox.lock:
                org = sandbox.org
                for pid, attrs in (data.get("upsert") or {}).items():
                    org.users[pid] = {**org.users.get(pid, {}), **attrs}
                for pid in data.get("delete") or []:
                    org.users.pop(pid, None)
                for gid, members in (data.get("groups") or {}).items():
                    org.groups.setdefault(gid, {"name": gid, "type": "STANDARD", "status": "ACTIVE"})["members"] = (
                        members
                    )
            return {"people": len(org.users)}
        raise api_error(404, "NOT_FOUND", "No such control", name)


class BusinessSandboxServer:
    """The sandbox on ``host:port`` (0 = a free port); ``base_url`` is its root."""

    def __init__(self, sandbox: BusinessSandbox, *, host: str = "127.0.0.1", port: int = 0):
        handler = type("Handler", (_Handler,), {"sandbox": sandbox})
        self.sandbox = sandbox
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://{host}:{self.port}"
        self._thread: threading.Thread | None = None

    def serve_forever(self) -> None:
        self.httpd.serve_forever(poll_interval=0.2)

    def start(self) -> BusinessSandboxServer:
        self._thread = threading.Thread(target=self.serve_forever, name="abm-sandbox", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
