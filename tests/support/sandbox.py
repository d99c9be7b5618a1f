"""Helpers for tests against the VPP sandbox (vpp/sandbox/) over real HTTP.

The fixtures live in conftest.py files: ``vpp_sandbox`` and ``vpp_sandbox_factory`` in
tests/conftest.py, ``api`` and ``receiver`` in tests/vpp/sandbox/conftest.py.

- ``store_sandbox_token(sandbox)``: point the console at a sandbox with its token stored.
- ``upload_sandbox_token(sandbox)``: the same through the upload (checked at Apple, unit claimed).
- ``Api(sandbox)``: raw HTTP calls for the sandbox's own tests (not our client, which is tested against it).
- ``Receiver()``: a tiny HTTP server standing in for the console's notification endpoint.
"""

from __future__ import annotations

import json

import requests

from vpp.sandbox.testing import SandboxHandle


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


def upload_sandbox_token(sandbox: SandboxHandle, token: str | None = None):
    """Point the console at the sandbox and upload its token (or ``token``) as an admin would:
    checked at Apple and the organizational unit claimed. Returns the VppServerSetting."""
    from vpp.models import VppServerSetting
    from vpp.services import setting as setting_service

    setting = VppServerSetting.load()
    setting.api_base_url = sandbox.base_url
    setting.save()
    return setting_service.token_upload(data=token or sandbox.token, actor=None)


class Api:
    """Tiny raw-HTTP helper: the sandbox's own tests don't use our client (it is tested against this)."""

    def __init__(self, sandbox):
        self.sandbox = sandbox
        self.http = requests.Session()

    def call(self, method: str, path: str, *, token: str | None = "default", **kwargs) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if token == "default":
            token = self.sandbox.token
        if token is not None:
            headers.setdefault("Authorization", f"Bearer {token}")
        return self.http.request(method, self.sandbox.base_url + path, headers=headers, timeout=10, **kwargs)

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.call("GET", path, **kwargs)

    def post(self, path: str, body=None, **kwargs) -> requests.Response:
        return self.call("POST", path, json=body, **kwargs)

    def ok(self, method: str, path: str, body=None, **kwargs) -> dict:
        response = (
            self.call(method, path, json=body, **kwargs) if body is not None else self.call(method, path, **kwargs)
        )
        assert response.status_code == 200, response.text
        data = response.json()
        assert "errorNumber" not in data, data
        return data

    def error(self, response: requests.Response, number: int, status: int) -> dict:
        assert (response.status_code, response.json().get("errorNumber")) == (status, number), response.text
        return response.json()

    def create(self, *users: dict, path: str = "/users/create", **kwargs) -> str:
        return self.ok("POST", path, {"users": list(users)}, **kwargs)["eventId"]

    def finished(self, event_id: str, **kwargs) -> dict:
        """The event's status once it left PENDING (the fixture's sandbox finishes events at once)."""
        self.sandbox.advance()
        status = self.ok("GET", "/status", params={"eventId": event_id}, **kwargs)
        assert status["eventStatus"] != "PENDING"
        return status


class Receiver:
    """A tiny HTTP server standing in for the console's notification endpoint."""

    def __init__(self):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        receiver = self
        self.received: list[tuple[dict, dict]] = []
        self.statuses: list[int] = []  # answers to give, in order; then 200

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.received.append((dict(self.headers), body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/vpp/notifications"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def of_type(self, notification_type: str) -> list[tuple[dict, dict]]:
        return [(h, b) for h, b in self.received if b["notificationType"] == notification_type]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
