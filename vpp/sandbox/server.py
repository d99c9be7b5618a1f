"""HTTP surface of the sandbox: Apple's v2 paths, the invitation page and /_sandbox/ controls.

Stdlib ``ThreadingHTTPServer`` (one thread per connection, HTTP/1.1 keep-alive); the
``Sandbox`` object holds the state and does the work under its lock.
"""

from __future__ import annotations

import html
import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from vpp.sandbox import registry
from vpp.sandbox.errors import ApiError, error_body
from vpp.sandbox.service import Sandbox
from vpp.sandbox.tokens import DEFAULT_LOCATION, DEFAULT_ORG, mint_token

log = logging.getLogger(__name__)

API = "/mdm/v2"
# path -> {method: (needs auth, handler name)}
ROUTES: dict[str, dict[str, tuple[bool, str]]] = {
    "/service/config": {"GET": (False, "service_config")},
    "/client/config": {"GET": (True, "client_config"), "POST": (True, "update_client_config")},
    "/users": {"GET": (True, "get_users")},
    "/users/create": {"POST": (True, "create_users")},
    "/users/update": {"POST": (True, "update_users")},
    "/users/retire": {"POST": (True, "retire_users")},
    "/assets": {"GET": (True, "get_assets")},
    "/assets/associate": {"POST": (True, "associate_assets")},
    "/assets/disassociate": {"POST": (True, "disassociate_assets")},
    "/assets/revoke": {"POST": (True, "revoke_assets")},
    "/assignments": {"GET": (True, "get_assignments")},
    "/status": {"GET": (True, "event_status")},
}


class Response:
    def __init__(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None):
        self.status, self.body, self.content_type = status, body, content_type
        self.headers = headers or {}


def json_response(status: int, data: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(status, json.dumps(data).encode(), "application/json;charset=UTF-8", headers)


class Request:
    def __init__(self, method: str, target: str, headers, body: bytes, *, arrived: float | None = None):
        self.arrived = arrived or time.time()
        parts = urlsplit(target)
        self.method, self.path, self.headers, self.body = method, parts.path.rstrip("/") or "/", headers, body
        # Repeated keys: the last one wins (Apple's parameters are all single-valued).
        self.query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}

    @property
    def base_url(self) -> str:
        return f"http://{self.headers.get('Host') or '127.0.0.1'}"

    def json(self) -> Any:
        return json.loads(self.body or b"null")


class App:
    def __init__(self, sandbox: Sandbox):
        self.sandbox = sandbox

    def __call__(self, request: Request) -> Response:
        if request.path == API or request.path.startswith(API + "/"):
            return self.api(request)
        if request.path == "/invite" or request.path.startswith("/invite/"):
            return self.invite(request)
        if request.path == "/_sandbox" or request.path.startswith("/_sandbox/"):
            return self.control(request)
        if request.path == "/":
            return json_response(200, {"service": "kmconsole VPP sandbox", "api": request.base_url + API})
        return json_response(404, {"error": "not found"})

    # --- Apple's API ---------------------------------------------------------------------
    def api(self, request: Request) -> Response:
        started = request.arrived
        sandbox = self.sandbox
        sandbox.advance()
        location = None
        try:
            route = ROUTES.get(request.path[len(API) :])
            if route is None:
                raise ApiError(9602, "Unknown endpoint.", status=404)
            if request.method not in route:
                error = ApiError(9726)
                error.headers["Allow"] = ", ".join(route)
                raise error
            if sandbox.options.latency > 0:
                time.sleep(sandbox.options.latency)
            failure = sandbox.injected_failure() or sandbox.injected_error(request.path[len(API) :])
            if failure:
                raise failure
            needs_auth, name = route[request.method]
            token = None
            if needs_auth:
                token = sandbox.authenticate(request.headers.get("Authorization"))
                location = token.location
                sandbox.check_rate(token.location, started)
            body = self._json_body(request) if request.method == "POST" else None
            response = json_response(200, getattr(self, f"do_{name}")(request, token, body))
        except ApiError as error:
            status = 200 if sandbox.options.errors_with_http_200 else error.status
            response = json_response(status, error.body, error.headers)
        except Exception:
            log.exception("sandbox: internal error on %s %s", request.method, request.path)
            response = json_response(500, error_body(9603))
        sandbox.counters.record(
            method=request.method, path=request.path, status=response.status, location=location, at=started
        )
        return response

    def _json_body(self, request: Request) -> dict[str, Any]:
        content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise ApiError(9727)
        try:
            body = request.json()
        except (ValueError, UnicodeDecodeError):
            raise ApiError(9602, "The request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise ApiError(9602, "The request body must be a JSON object.")
        return body

    def do_service_config(self, request, token, body):
        return self.sandbox.service_config(request.base_url)

    def do_client_config(self, request, token, body):
        return self.sandbox.client_config(token)

    def do_update_client_config(self, request, token, body):
        return self.sandbox.update_client_config(token, body)

    def do_get_users(self, request, token, body):
        return self.sandbox.get_users(token, request.query)

    def do_create_users(self, request, token, body):
        return self.sandbox.manage_users(token, "CREATE", body)

    def do_update_users(self, request, token, body):
        return self.sandbox.manage_users(token, "UPDATE", body)

    def do_retire_users(self, request, token, body):
        return self.sandbox.manage_users(token, "RETIRE", body)

    def do_get_assets(self, request, token, body):
        return self.sandbox.get_assets(token, request.query)

    def do_associate_assets(self, request, token, body):
        return self.sandbox.manage_assets(token, "ASSOCIATE", body)

    def do_disassociate_assets(self, request, token, body):
        return self.sandbox.manage_assets(token, "DISASSOCIATE", body)

    def do_revoke_assets(self, request, token, body):
        return self.sandbox.manage_assets(token, "REVOKE", body)

    def do_get_assignments(self, request, token, body):
        return self.sandbox.get_assignments(token, request.query)

    def do_event_status(self, request, token, body):
        return self.sandbox.event_status(token, request.query)

    # --- control endpoints ---------------------------------------------------------------
    def control(self, request: Request) -> Response:
        name = request.path[len("/_sandbox") :].strip("/")
        try:
            body = request.json() if request.body else None
        except ValueError:
            return json_response(400, {"error": "body is not JSON"})
        handler = self._control_handler(request.method, name)
        if handler is None:
            return json_response(404, {"error": f"no control endpoint {request.method} /_sandbox/{name}"})
        try:
            return json_response(200, handler(request.query, body))
        except (ValueError, TypeError) as exc:
            return json_response(400, {"error": str(exc)})

    def _control_handler(self, method: str, name: str) -> Callable | None:
        s = self.sandbox
        builtin: dict[tuple[str, str], Callable] = {
            ("GET", ""): lambda q, b: {"routes": CONTROL_ROUTES + registry.control_routes()},
            ("GET", "health"): lambda q, b: {"ok": True},
            ("GET", "faults"): lambda q, b: s.options.to_json(),
            ("POST", "faults"): lambda q, b: self._set_faults(b or {}),
            ("GET", "counters"): lambda q, b: s.counters.to_json(
                requests=q.get("requests", "1") != "0", since=float(q.get("since", 0))
            ),
            ("POST", "assets/count"): lambda q, b: s.change_asset_count(**_asset_count_args(b or {})),
            ("POST", "reset"): lambda q, b: self._reset(b or {}),
            ("POST", "advance"): lambda q, b: {"finished": s.advance(force=bool((b or {}).get("force", True)))},
            ("GET", "notifications"): lambda q, b: {"notifications": s.notifier.deliveries()},
            ("POST", "token"): lambda q, b: {"token": mint_token(**_token_args(b or {}))},
            ("POST", "invitations/accept"): lambda q, b: self._accept(b or {}),
        }
        for what in ("users", "assignments", "assets", "events", "locations"):
            builtin[("GET", f"state/{what}")] = lambda q, b, what=what: {what: s.inspect(what, q.get("location"))}
        return builtin.get((method, name)) or registry.control_route(method, name)

    def _set_faults(self, body: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ValueError("body must be a JSON object")
        changes = dict(body)
        # Shortcuts: revoke/expire one token without restating the whole list.
        for action, key in (("revoke_token", "revoked_tokens"), ("expire_token", "expired_tokens")):
            if action in changes:
                changes[key] = [*getattr(self.sandbox.options, key), str(changes.pop(action))]
        return self.sandbox.set_options(changes).to_json()

    def _reset(self, body: dict[str, Any]) -> dict[str, Any]:
        self.sandbox.reset(
            state=bool(body.get("state", True)),
            faults=bool(body.get("faults", True)),
            counters=bool(body.get("counters", True)),
        )
        return {"reset": True}

    def _accept(self, body: dict[str, Any]) -> dict[str, Any]:
        code, account = str(body.get("inviteCode", "")), str(body.get("appleAccount", ""))
        outcome, record = self.sandbox.accept_invitation(code, account)
        return {"outcome": outcome, "user": record}

    # --- invitation page -----------------------------------------------------------------
    def invite(self, request: Request) -> Response:
        tail = request.path[len("/invite") :].strip("/")
        code = tail or request.query.get("inviteCode", "")
        if request.method == "GET":
            return self._invite_page(code)
        if request.method == "POST":
            form = {k: v[-1] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}
            outcome, _ = self.sandbox.accept_invitation(form.get("inviteCode", code), form.get("appleAccount", ""))
            return self._invite_page(code, outcome=outcome, status=200 if outcome in ("accepted", "already") else 409)
        return Response(405, b"Method not allowed", "text/plain", {"Allow": "GET, POST"})

    def _invite_page(self, code: str, *, outcome: str | None = None, status: int = 200) -> Response:
        loc, record = self.sandbox.find_invitation(code)
        org = html.escape(loc["orgName"]) if loc else "your organisation"
        if record is None:
            title, text, form = "Invitation not found", "This invitation link is not valid.", False
            status = 404
        elif outcome == "accepted" or (outcome is None and record["status"] == "Associated"):
            title, text, form = "Invitation accepted", f"Apps and books from {org} will now be assigned to you.", False
        elif outcome == "taken":
            title, text, form = "Not accepted", "That Apple Account is already associated with another user.", True
        elif record["status"] == "Retired":
            title, text, form = "Invitation withdrawn", f"{org} no longer offers this invitation.", False
            status = 410 if outcome is None else status
        else:
            title, text, form = f"{org} invites you", f"Accept to receive apps and books purchased by {org}.", True
        body = INVITE_PAGE.format(
            title=html.escape(title),
            text=text,
            form=INVITE_FORM.format(action="/invite/" + quote(code, safe="")) if form else "",
        )
        return Response(status, body.encode(), "text/html;charset=UTF-8")


CONTROL_ROUTES = [
    "GET /_sandbox/health",
    "GET /_sandbox/faults",
    "POST /_sandbox/faults",
    "GET /_sandbox/counters",
    "POST /_sandbox/reset",
    "POST /_sandbox/advance",
    "GET /_sandbox/notifications",
    "POST /_sandbox/token",
    "POST /_sandbox/invitations/accept",
    "POST /_sandbox/assets/count",
    "GET /_sandbox/state/users",
    "GET /_sandbox/state/assignments",
    "GET /_sandbox/state/assets",
    "GET /_sandbox/state/events",
    "GET /_sandbox/state/locations",
]

INVITE_FORM = """<form method="post" action="{action}">
  <label>Apple Account (optional)<input type="email" name="appleAccount" placeholder="you@icloud.com"></label>
  <button type="submit">Accept invitation</button>
</form>"""

INVITE_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Apps and Books (sandbox)</title>
<style>
body {{ font: 16px/1.5 -apple-system, system-ui, sans-serif; background: #f5f5f7; color: #1d1d1f; margin: 0; }}
main {{ max-width: 28rem; margin: 10vh auto; background: #fff; border-radius: 14px; padding: 2rem;
       box-shadow: 0 2px 12px rgba(0,0,0,.08); }}
h1 {{ font-size: 1.5rem; margin: 0 0 .5rem; }}
label {{ display: block; margin: 1rem 0; font-size: .9rem; color: #555; }}
input {{ display: block; width: 100%; box-sizing: border-box; padding: .5rem; margin-top: .25rem;
        border: 1px solid #ccc; border-radius: 8px; font: inherit; }}
button {{ background: #0071e3; color: #fff; border: 0; border-radius: 980px; padding: .6rem 1.4rem;
          font: inherit; cursor: pointer; }}
small {{ display: block; margin-top: 1.5rem; color: #888; }}
</style></head>
<body><main>
<h1>{title}</h1>
<p>{text}</p>
{form}
<small>kmconsole VPP sandbox — an imitation of Apple's invitation page for testing.</small>
</main></body></html>
"""


def _asset_count_args(body: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(body.get("adamId"), str) or not isinstance(body.get("countDelta"), int):
        raise ValueError("adamId (string) and countDelta (integer) are required")
    return {
        "location": str(body.get("location", DEFAULT_LOCATION)),
        "adam_id": body["adamId"],
        "delta": body["countDelta"],
    }


def _token_args(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "org": str(body.get("org", DEFAULT_ORG)),
        "location": str(body.get("location", DEFAULT_LOCATION)),
        "expires_in_days": float(body.get("expires_in_days", 365)),
        "expired": bool(body.get("expired", False)),
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes: avoid the 40 ms stall
    server_version = "vpp-sandbox/1.0"

    def _handle(self) -> None:
        arrived = time.time()  # as early as we can: the rate-limit tests look at arrival times
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        response = self.server.app(Request(self.command, self.path, self.headers, body, arrived=arrived))
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The Date header by the sandbox's clock (``clock_offset`` fault: a server clock unlike ours)."""
        from email.utils import formatdate

        return formatdate(self.server.app.sandbox.now() if timestamp is None else timestamp, usegmt=True)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("sandbox: %s " + format, self.address_string(), *args)


class SandboxHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address, app: App):
        self.app = app
        super().__init__(address, Handler)


class SandboxServer:
    """A running sandbox: state + HTTP server in a background thread."""

    def __init__(self, sandbox: Sandbox, *, host: str = "127.0.0.1", port: int = 0):
        self.sandbox = sandbox
        self.httpd = SandboxHTTPServer((host, port), App(sandbox))
        self.host, self.port = self.httpd.server_address[:2]
        self._thread: threading.Thread | None = None

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.root_url + API

    def start(self) -> SandboxServer:
        self.sandbox.start()
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.1,), name="sandbox-http", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.sandbox.start()
        try:
            self.httpd.serve_forever()
        finally:
            self.httpd.server_close()
            self.sandbox.stop()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread:
            self._thread.join(timeout=5)
        self.sandbox.stop()
