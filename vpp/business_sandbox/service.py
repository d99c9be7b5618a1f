"""State and behaviour of the Apple Business API sandbox (no HTTP here; server.py serves it).

An imitation of the parts of the Apple Business API a people import needs, faithful to the
project's notes (docs/apple-business.md, from Apple's pages): the OAuth token endpoint with an
ES256 client assertion checked against the API account's registered public key, JSON:API
documents (``data``/``attributes``/``links``/``meta.paging``), opaque cursors, ``limit`` ≤ 1000,
``errors`` bodies, 401 for a missing/expired/unknown token, 404 NOT_FOUND.

Fault injection (``/_sandbox/faults``): queued faults answer the next matching requests with a
status (429 with ``Retry-After``, 5xx), ``expire_tokens`` makes every issued access token expire
now (the next API call gets 401), and ``requests_per_minute`` enforces a rate limit with 429.
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import jwt

AUDIENCE = "https://account.apple.com/auth/oauth2/v2/token"
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100  # Apple's examples show 100 (probable default)
ASSERTION_MAX_AGE = 180 * 24 * 3600
TOKEN_LIFETIME = 3600


class ApiError(Exception):
    """An answer other than 200: ``status``, ``body`` (JSON) and extra ``headers``."""

    def __init__(self, status: int, body: dict, headers: dict[str, str] | None = None):
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


def api_error(status: int, code: str, title: str, detail: str, **extra) -> ApiError:
    error = {"id": secrets.token_hex(8), "status": str(status), "code": code, "title": title, "detail": detail}
    error.update(extra)
    return ApiError(status, {"errors": [error]})


def oauth_error(status: int, error: str, description: str) -> ApiError:
    return ApiError(status, {"error": error, "error_description": description})


@dataclass
class Fault:
    """Answer the next ``times`` requests whose path starts with ``path`` with ``status``."""

    status: int
    path: str = "/v1/"
    times: int = 1
    retry_after: str | None = None


@dataclass
class Organisation:
    """The directory: people, groups (with member ids), organizational units and devices."""

    name: str = "Sandbox Organisation"
    users: dict[str, dict] = field(default_factory=dict)  # id -> attributes (insertion order = list order)
    groups: dict[str, dict] = field(default_factory=dict)  # id -> attributes + "members": [ids]
    units: dict[str, dict] = field(default_factory=dict)  # id -> attributes + "members": [ids]
    devices: dict[str, dict] = field(default_factory=dict)  # serial -> attributes


class BusinessSandbox:
    """Everything the server needs, under one lock. ``accounts``: client id → {key id: public PEM}."""

    def __init__(self, *, requests_per_minute: int | None = None, token_lifetime: int = TOKEN_LIFETIME):
        self.lock = threading.Lock()
        self.org = Organisation()
        self.accounts: dict[str, dict[str, str]] = {}
        self.tokens: dict[str, tuple[str, float]] = {}  # access token -> (client id, expires at)
        self.faults: deque[Fault] = deque()
        self.requests_per_minute = requests_per_minute
        self.token_lifetime = token_lifetime
        self.reject_reused_jti = False
        self._jtis: set[str] = set()
        self._window: deque[float] = deque()
        self.counters: dict[str, int] = {}

    # ---- controls -------------------------------------------------------------------------

    def register_account(self, client_id: str, key_id: str, public_key_pem: str) -> None:
        with self.lock:
            self.accounts.setdefault(client_id, {})[key_id] = public_key_pem

    def add_fault(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def expire_tokens(self) -> None:
        with self.lock:
            self.tokens = {t: (c, 0.0) for t, (c, _) in self.tokens.items()}

    def reset(self, *, keep_accounts: bool = True) -> None:
        with self.lock:
            self.org, self.tokens, self.counters = Organisation(), {}, {}
            self.faults.clear()
            self._window.clear()
            self._jtis.clear()
            if not keep_accounts:
                self.accounts = {}

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    # ---- the token endpoint ---------------------------------------------------------------

    def issue_token(self, params: dict[str, str]) -> dict:
        """POST /auth/oauth2/token (form body or query): the five parameters, an ES256 assertion
        signed by a registered key (``kid``), sub == client_id, iss absent or == client_id, the v2
        audience, iat ≤ now < exp, exp − iat < 180 days. Errors are OAuth JSON."""
        with self.lock:
            self.count("token_requests")
            self._fault_for("/auth/")
            for name in ("grant_type", "client_id", "client_assertion_type", "client_assertion", "scope"):
                if not params.get(name):
                    raise oauth_error(400, "invalid_request", f"{name} is required")
            if params["grant_type"] != "client_credentials":
                raise oauth_error(400, "unsupported_grant_type", "grant_type must be client_credentials")
            if params["scope"] != "business.api":
                raise oauth_error(400, "invalid_scope", "scope must be business.api")
            client_id = params["client_id"]
            keys = self.accounts.get(client_id)
            if not keys:
                raise oauth_error(401, "invalid_client", "unknown client")
            assertion = params["client_assertion"]
            try:
                header = jwt.get_unverified_header(assertion)
            except jwt.PyJWTError:
                raise oauth_error(401, "invalid_client", "malformed client assertion") from None
            if header.get("alg") != "ES256":
                raise oauth_error(401, "invalid_client", "the assertion must be signed with ES256")
            public = keys.get(str(header.get("kid") or ""))
            if public is None:
                raise oauth_error(401, "invalid_client", "unknown key id")
            try:
                claims = jwt.decode(
                    assertion,
                    public,
                    algorithms=["ES256"],
                    audience=AUDIENCE,
                    options={"require": ["exp", "iat", "sub", "aud", "jti"]},
                    leeway=5,
                )
            except jwt.ExpiredSignatureError:
                raise oauth_error(401, "invalid_client", "client assertion expired") from None
            except jwt.PyJWTError as exc:
                raise oauth_error(401, "invalid_client", f"client assertion rejected: {exc}") from None
            if claims["sub"] != client_id or claims.get("iss", client_id) != client_id:
                raise oauth_error(401, "invalid_client", "sub/iss must be the client id")
            if claims["exp"] - claims["iat"] >= ASSERTION_MAX_AGE or claims["iat"] > time.time() + 60:
                raise oauth_error(401, "invalid_client", "assertion lifetime out of range")
            if self.reject_reused_jti and claims["jti"] in self._jtis:
                raise oauth_error(401, "invalid_client", "assertion already used")
            self._jtis.add(claims["jti"])
            token = "abm." + secrets.token_urlsafe(32)
            self.tokens[token] = (client_id, time.time() + self.token_lifetime)
            self.count("tokens_issued")
            return {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": self.token_lifetime,
                "scope": "business.api",
            }

    # ---- the API --------------------------------------------------------------------------

    def api(self, path: str, query: dict[str, str], authorization: str, base: str) -> dict:
        """GET ``path`` (under /v1/) for the bearer in ``authorization``; raises ApiError."""
        with self.lock:
            self.count("api_requests")
            self._fault_for(path)
            token = authorization[7:] if authorization.startswith("Bearer ") else ""
            entry = self.tokens.get(token)
            if entry is None or entry[1] <= time.time():
                self.count("unauthorized")
                raise api_error(
                    401, "UNAUTHORIZED", "Authentication failed", "The access token is missing, expired or invalid."
                )
            self._rate_limit()
            return self._route(path, query, base)

    def _route(self, path: str, query: dict[str, str], base: str) -> dict:
        parts = path.strip("/").split("/")[1:]  # drop "v1"
        org = self.org
        collections = {
            "users": ("users", org.users),
            "userGroups": ("userGroups", org.groups),
            "organizationalUnits": ("organizationalUnits", org.units),
            "orgDevices": ("orgDevices", org.devices),
        }
        if not parts or parts[0] not in collections:
            raise api_error(404, "NOT_FOUND", "The specified resource does not exist", f"No resource at {path}.")
        kind, records = collections[parts[0]]
        if len(parts) == 1:
            ids = list(records)
            return self._list(base + path, ids, query, lambda i: self._resource(kind, i, records[i], base))
        record_id = parts[1]
        if record_id not in records:
            raise api_error(
                404,
                "NOT_FOUND",
                "The specified resource does not exist",
                f"There is no resource of type '{kind}' with id '{record_id}'.",
            )
        if len(parts) == 2:
            return {"data": self._resource(kind, record_id, records[record_id], base), "links": {"self": base + path}}
        if parts[2:] == ["relationships", "users"] and kind in ("userGroups", "organizationalUnits"):
            members = [m for m in records[record_id]["members"] if m in org.users]
            return self._list(base + path, members, query, lambda i: {"type": "users", "id": i})
        raise api_error(404, "NOT_FOUND", "The specified resource does not exist", f"No resource at {path}.")

    def _resource(self, kind: str, record_id: str, attrs: dict, base: str) -> dict:
        shown = {k: v for k, v in attrs.items() if k != "members"}
        item = {"type": kind, "id": record_id, "attributes": shown, "links": {"self": f"{base}/v1/{kind}/{record_id}"}}
        if kind in ("userGroups", "organizationalUnits"):
            item["relationships"] = {"users": {"links": {"self": f"{base}/v1/{kind}/{record_id}/relationships/users"}}}
        return item

    def _list(self, self_url: str, ids: list[str], query: dict[str, str], render) -> dict:
        try:
            limit = int(query.get("limit") or DEFAULT_LIMIT)
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_LIMIT:
            raise api_error(
                400, "PARAMETER_ERROR.INVALID", "A parameter has an invalid value", "limit must be 1 to 1000",
                source={"parameter": "limit"},
            )  # fmt: skip
        start = 0
        if query.get("cursor"):
            try:
                start = int(base64.urlsafe_b64decode(query["cursor"].encode()).decode().removeprefix("o:"))
            except ValueError:
                raise api_error(
                    400, "PARAMETER_ERROR.INVALID", "A parameter has an invalid value", "cursor is not valid",
                    source={"parameter": "cursor"},
                ) from None  # fmt: skip
        chunk = ids[start : start + limit]
        paging: dict[str, Any] = {"limit": limit, "total": len(ids)}
        links = {"self": self_url + (f"?limit={limit}" + (f"&cursor={query['cursor']}" if query.get("cursor") else ""))}
        if start + limit < len(ids):
            cursor = base64.urlsafe_b64encode(f"o:{start + limit}".encode()).decode()
            paging["nextCursor"] = cursor
            links["next"] = f"{self_url}?limit={limit}&cursor={cursor}"
        return {"data": [render(i) for i in chunk], "links": links, "meta": {"paging": paging}}

    # ---- faults and the rate limit --------------------------------------------------------

    def _fault_for(self, path: str) -> None:
        for fault in list(self.faults):
            if path.startswith(fault.path):
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
                self.count(f"fault_{fault.status}")
                headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
                if fault.status == 429:
                    raise ApiError(
                        429, api_error(429, "RATE_LIMIT_EXCEEDED", "Too many requests", "Slow down.").body, headers
                    )
                raise ApiError(
                    fault.status,
                    api_error(fault.status, "INTERNAL_ERROR", "Internal error", "Injected fault.").body,
                    headers,
                )

    def _rate_limit(self) -> None:
        if not self.requests_per_minute:
            return
        now = time.monotonic()
        while self._window and self._window[0] <= now - 60:
            self._window.popleft()
        if len(self._window) >= self.requests_per_minute:
            wait = max(1, int(self._window[0] + 60 - now) + 1)
            self.count("rate_limited")
            raise ApiError(
                429,
                api_error(429, "RATE_LIMIT_EXCEEDED", "Too many requests", "The rate limit was exceeded.").body,
                {"Retry-After": str(wait)},
            )
        self._window.append(now)
