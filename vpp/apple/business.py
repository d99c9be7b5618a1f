"""Client for the Apple Business API (formerly Apple Business Manager API): people, user groups,
organizational units and organization devices, read-only.

It is a different service from VPP (vpp/apple/client.py) with the same habits: ONE HTTP
chokepoint (``BusinessClient._send``), typed results, named errors split into transient (retry
later: ``RateLimitedError``, ``ServiceUnavailableError``) and permanent (show the admin:
``BusinessAuthError``, ``BusinessNotPermittedError``, ``InvalidRequestError``), Retry-After
honoured through the one parser (vpp/apple/errors.py) and a rate limit shared by every worker
(vpp/apple/ratelimit.py) per API account.

Auth (https://developer.apple.com/documentation/apple-school-and-business-manager-api/implementing-oauth-for-the-apple-school-manager-and-apple-business-api):
OAuth 2 client credentials with a client assertion, an ES256 JWT signed with the API account's
private key (``kid`` = key id; ``iss``/``sub`` = client id; ``aud`` = Apple's v2 token URL). The
access token lives one hour; it is cached for every worker (in Redis, the same store as the APNs
provider token) and renewed 5 minutes before it
expires or when the API answers 401 (the request is then replayed once). Refreshes are
single-flight under a short lock in the same store. Apple's pages and the project's notes on
them: docs/apple-business.md.

Paging: cursor paging, ``limit`` ≤ 1000, followed until neither ``links.next`` nor
``meta.paging.nextCursor`` is present (https://developer.apple.com/documentation/applebusinessapi/get-users).

Secrets: the private key and the access token are never logged nor put in an exception message;
limiter and cache keys are hashes of the client id.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urljoin

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from redis.exceptions import RedisError

from vpp.apple import ratelimit
from vpp.apple.apns import ApnsUnavailableError, TokenStore, default_token_store
from vpp.apple.client import USER_AGENT
from vpp.apple.errors import (
    InvalidRequestError,
    PermanentVppError,
    RateLimitedError,
    ServiceUnavailableError,
    TransientVppError,
    parse_retry_after,
)

logger = logging.getLogger(__name__)

API_BASE_URL = "https://api-business.apple.com"
TOKEN_URL = "https://account.apple.com/auth/oauth2/token"
ASSERTION_AUDIENCE = "https://account.apple.com/auth/oauth2/v2/token"
SCOPE = "business.api"
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
PAGE_LIMIT = 1000  # Apple's maximum on every list and linkage endpoint
ASSERTION_LIFETIME = 20 * 60  # seconds; short-lived is the safer default (Apple allows < 180 days)
TOKEN_MARGIN = 300  # seconds: renew this long before Apple's expires_in runs out
# Apple publishes no numbers; about 20 GET requests a minute was measured by an implementer
# (docs/apple-business.md#rate-limit). The setting APPLE_BUSINESS_REQUESTS_PER_MINUTE overrides it.
DEFAULT_REQUESTS_PER_MINUTE = 20
_LIMITER_WINDOW = 63.0  # `requests_per_minute` spread over slightly more than a minute (as ratelimit.DEFAULT_WINDOW)
_REFRESH_LOCK_SECONDS = 30


# ---------------------------------------------------------------------------------------- errors


class BusinessAuthError(PermanentVppError):
    """The API account's credentials were refused (token endpoint 400/401, or a second 401 from
    the API after a fresh token): wrong client id / key id, a revoked key, an unreadable key."""


class BusinessNotPermittedError(PermanentVppError):
    """403: the API account's role lacks the permission for this resource."""


class BusinessNotFoundError(InvalidRequestError):
    """404 NOT_FOUND for a single resource or a linkage (unknown id)."""


class BusinessKeyError(ValueError):
    """The uploaded private key is not an EC P-256 key in PEM (Apple: ES256). ``str()`` is for the admin."""


def load_private_key(pem: str | bytes) -> ec.EllipticCurvePrivateKey:
    """Parse the API account's private key (PEM, EC P-256). Raises ``BusinessKeyError``."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = load_pem_private_key(data.strip() + b"\n", password=None)
    except (ValueError, TypeError):
        raise BusinessKeyError("This is not a private key in PEM format (Apple Business gives a .pem file).") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise BusinessKeyError("Apple Business API keys are elliptic-curve P-256 keys (ES256); this key is not one.")
    return key


# ----------------------------------------------------------------------------------------- types


@dataclass(frozen=True)
class BusinessUser:
    """A person (``GET /v1/users``). ``status``: NEW, RELEASED, ACTIVE, DEACTIVATED, LOCKED,
    LOCKED_FOR_SHARED_IPAD (https://developer.apple.com/documentation/applebusinessapi/userstatus)."""

    id: str
    first_name: str = ""
    middle_name: str = ""
    last_name: str = ""
    status: str = ""
    managed_apple_account: str = ""
    email: str = ""
    employee_number: str = ""
    department: str = ""
    is_external: bool = False

    @property
    def display_name(self) -> str:
        return " ".join(p for p in (self.first_name, self.middle_name, self.last_name) if p) or self.id

    @property
    def active(self) -> bool:
        """Only ACTIVE people are active here (deactivated, locked and released ones are not)."""
        return self.status == "ACTIVE"

    @classmethod
    def from_json(cls, item: dict) -> BusinessUser:
        a = item.get("attributes") or {}
        return cls(
            id=str(item.get("id") or ""),
            first_name=_s(a.get("firstName")),
            middle_name=_s(a.get("middleName")),
            last_name=_s(a.get("lastName")),
            status=_s(a.get("status")).upper(),
            managed_apple_account=_s(a.get("managedAppleAccount")),
            email=_s(a.get("email")),
            employee_number=_s(a.get("employeeNumber")),
            department=_s(a.get("department")),
            is_external=bool(a.get("isExternalUser")),
        )


@dataclass(frozen=True)
class UserGroup:
    """A user group (``GET /v1/userGroups``); ``type`` STANDARD or SMART."""

    id: str
    name: str = ""
    type: str = ""
    ou_id: str = ""
    member_count: int | None = None
    status: str = ""

    @classmethod
    def from_json(cls, item: dict) -> UserGroup:
        a = item.get("attributes") or {}
        count = a.get("totalMemberCount")
        return cls(
            id=str(item.get("id") or ""),
            name=_s(a.get("name")),
            type=_s(a.get("type")),
            ou_id=_s(a.get("ouId")),
            member_count=int(count) if isinstance(count, int | float) else None,
            status=_s(a.get("status")),
        )


@dataclass(frozen=True)
class OrgUnit:
    """An organizational unit (``GET /v1/organizationalUnits``, API 2.2+)."""

    id: str
    name: str = ""
    description: str = ""

    @classmethod
    def from_json(cls, item: dict) -> OrgUnit:
        a = item.get("attributes") or {}
        return cls(id=str(item.get("id") or ""), name=_s(a.get("name")), description=_s(a.get("description")))


@dataclass(frozen=True)
class OrgDevice:
    """A device of the organization (``GET /v1/orgDevices``); ``status`` ASSIGNED or UNASSIGNED
    (to a device management service); ``product_family`` iPhone, iPad, Mac, AppleTV, Watch, Vision."""

    id: str
    serial_number: str = ""
    model: str = ""
    product_family: str = ""
    product_type: str = ""
    status: str = ""

    @classmethod
    def from_json(cls, item: dict) -> OrgDevice:
        a = item.get("attributes") or {}
        return cls(
            id=str(item.get("id") or ""),
            serial_number=_s(a.get("serialNumber")) or str(item.get("id") or ""),
            model=_s(a.get("deviceModel")),
            product_family=_s(a.get("productFamily")),
            product_type=_s(a.get("productType")),
            status=_s(a.get("status")),
        )


@dataclass
class Page:
    """One page of a list: ``items`` (the raw ``data`` entries), ``total`` when Apple sent it."""

    items: list[dict]
    next_url: str | None
    total: int | None = None
    raw_meta: dict = field(default_factory=dict)


def _s(value: Any) -> str:
    return "" if value is None else str(value).strip()


# ---------------------------------------------------------------------------------- the limiter

_limiter_lock = threading.Lock()
_limiters: dict[str, ratelimit.RateLimiter] = {}


def default_business_rate_limiter() -> ratelimit.RateLimiter:
    """The process-wide limiter for Apple Business accounts (requests per minute), shared by every
    process through settings.REDIS_URL (the private Redis when none is configured), as VPP's."""
    from django.conf import settings

    with _limiter_lock:
        limiter = _limiters.get(settings.REDIS_URL)
        if limiter is None:
            limiter = ratelimit.RedisRateLimiter.from_url(
                settings.REDIS_URL, window=_LIMITER_WINDOW, prefix="kmconsole:abm"
            )
            _limiters[settings.REDIS_URL] = limiter
        return limiter


# ----------------------------------------------------------------------------------- the client


class BusinessClient:
    """One Apple Business API account (client id, key id, private key) against one server.

    ``base_url``: the API root (Apple: https://api-business.apple.com; the sandbox: its root).
    ``token_url``: Apple's token endpoint (the sandbox: ``<root>/auth/oauth2/token``).
    ``requests_per_minute``: the shared pace for this account (all workers). ``token_store``:
    where the access token is shared (default: settings.REDIS_URL). Raises
    ``BusinessKeyError`` for a key that is not EC P-256 PEM.
    """

    def __init__(
        self,
        *,
        client_id: str,
        key_id: str,
        private_key: str,
        base_url: str = API_BASE_URL,
        token_url: str = TOKEN_URL,
        requests_per_minute: int = DEFAULT_REQUESTS_PER_MINUTE,
        rate_limiter: ratelimit.RateLimiter | None = None,
        token_store: TokenStore | None = None,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = (5, 60),
        max_retries: int = 4,
        backoff_base: float = 1.0,
        backoff_max: float = 30.0,
        retry_budget: float = 180.0,
    ):
        if not client_id.strip() or not key_id.strip():
            raise BusinessAuthError("The Apple Business client id and key id are both needed.")
        self.client_id, self.key_id = client_id.strip(), key_id.strip()
        self._key = load_private_key(private_key)
        self.base_url = base_url.rstrip("/")
        self.token_url = token_url
        self.requests_per_minute = max(1, int(requests_per_minute))
        self.rate_limiter = rate_limiter if rate_limiter is not None else default_business_rate_limiter()
        self.token_store = token_store if token_store is not None else default_token_store()
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        self.timeout = timeout
        self.max_retries, self.backoff_base, self.backoff_max = max_retries, backoff_base, backoff_max
        self.retry_budget = retry_budget
        account = hashlib.sha256(f"{self.base_url}|{self.client_id}|{self.key_id}".encode()).hexdigest()[:24]
        self.limiter_key = f"abm:{account}"
        self.cache_key = f"kmconsole:abm:access-token:{account}"
        self.requests_sent = 0  # HTTP requests this client made (token + API), for the bench and tests

    def __repr__(self) -> str:
        return f"<BusinessClient {self.base_url}>"

    # ---- the directory --------------------------------------------------------------------

    def iter_users(self, *, page_limit: int = PAGE_LIMIT) -> Iterator[list[BusinessUser]]:
        """Every person, one list per page (GET /v1/users, followed to the last page)."""
        for page in self.pages("/v1/users", limit=page_limit):
            yield [BusinessUser.from_json(item) for item in page.items if isinstance(item, dict)]

    def get_user(self, user_id: str) -> BusinessUser:
        """GET /v1/users/{id}; ``BusinessNotFoundError`` for an unknown id."""
        return BusinessUser.from_json(self.get(f"/v1/users/{user_id}").get("data") or {})

    def user_groups(self) -> list[UserGroup]:
        """Every user group (GET /v1/userGroups, all pages)."""
        return [UserGroup.from_json(i) for page in self.pages("/v1/userGroups") for i in page.items]

    def group_member_ids(self, group_id: str) -> list[str]:
        """The ids of a group's members (GET /v1/userGroups/{id}/relationships/users, all pages)."""
        path = f"/v1/userGroups/{group_id}/relationships/users"
        return [str(i.get("id")) for page in self.pages(path) for i in page.items if i.get("id")]

    def org_units(self) -> list[OrgUnit]:
        """Every organizational unit (GET /v1/organizationalUnits, all pages)."""
        return [OrgUnit.from_json(i) for page in self.pages("/v1/organizationalUnits") for i in page.items]

    def org_unit_member_ids(self, ou_id: str) -> list[str]:
        """The ids of the people of an organizational unit (its user linkages, all pages)."""
        path = f"/v1/organizationalUnits/{ou_id}/relationships/users"
        return [str(i.get("id")) for page in self.pages(path) for i in page.items if i.get("id")]

    def iter_devices(self, *, page_limit: int = PAGE_LIMIT) -> Iterator[list[OrgDevice]]:
        """Every organization device, one list per page (GET /v1/orgDevices)."""
        for page in self.pages("/v1/orgDevices", limit=page_limit):
            yield [OrgDevice.from_json(item) for item in page.items if isinstance(item, dict)]

    def count(self, path: str) -> int | None:
        """``meta.paging.total`` of a list (one request with limit=1), or None when Apple omits it."""
        return self.first_page(path, limit=1).total

    def first_page(self, path: str, *, limit: int = PAGE_LIMIT) -> Page:
        return _page(self.get(path, params={"limit": str(limit)}))

    # ---- paging ---------------------------------------------------------------------------

    def pages(self, path: str, *, limit: int = PAGE_LIMIT, prefetch: bool = True) -> Iterator[Page]:
        """Follow a list to its end: ``links.next`` (absolute or relative), else
        ``meta.paging.nextCursor`` as ``cursor``. A cursor seen twice is an error (it would loop).

        ``prefetch``: the next page is fetched (one thread) while the caller works on this one, so
        a sync writes page N while page N+1 waits for its rate-limit slot: the time is the larger
        of the two, not their sum. Pages still arrive strictly in order."""
        first = _page(self.get(path, params={"limit": str(limit)}))
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="abm-page") if prefetch else None
        try:
            page, seen = first, set()
            while True:
                following = None
                if page.next_url is not None:
                    if page.next_url in seen:
                        raise ServiceUnavailableError("Apple Business repeated a page; the sync will read again later.")
                    seen.add(page.next_url)
                    url = page.next_url
                    following = pool.submit(self.get, url) if pool else None
                yield page
                if page.next_url is None:
                    return
                page = _page(following.result() if following else self.get(page.next_url))
        finally:
            if pool:
                pool.shutdown(wait=True, cancel_futures=True)

    # ---- HTTP -----------------------------------------------------------------------------

    def get(self, path_or_url: str, *, params: dict[str, str] | None = None) -> dict:
        """One GET with bounded retries of transient errors (Retry-After pauses every worker of
        this account), the access token attached, and one replay after a 401 with a fresh token."""
        url = path_or_url if path_or_url.startswith("http") else f"{self.base_url}{path_or_url}"
        started, attempt = time.monotonic(), 0
        while True:
            try:
                return self._authorized_get(url, params)
            except TransientVppError as exc:
                if exc.retry_after:
                    self.rate_limiter.pause(self.limiter_key, exc.retry_after)
                if attempt >= self.max_retries:
                    raise
                delay = exc.retry_after or random.uniform(*_backoff(self.backoff_base, self.backoff_max, attempt))
                if time.monotonic() - started + delay > self.retry_budget:
                    raise
                attempt += 1
                logger.info("Apple Business GET %s: %s; retry %d in %.1f s", url, type(exc).__name__, attempt, delay)
                if not exc.retry_after:
                    time.sleep(delay)  # with Retry-After, the limiter's pause does the waiting

    def _authorized_get(self, url: str, params: dict[str, str] | None) -> dict:
        token = self.access_token()
        response = self._send("GET", url, params=params, token=token)
        if response.status_code == 401:
            # Apple: get a new token whenever the API answers 401; replay once.
            self._invalidate(token)
            response = self._send("GET", url, params=params, token=self.access_token())
            if response.status_code == 401:
                raise BusinessAuthError(
                    "Apple Business refused a fresh access token for this API account. "
                    "Check the account in Apple Business (it may have been deleted or its role changed).",
                    http_status=401,
                )
        return _api_result(response)

    def _send(self, method: str, url: str, *, token: str | None = None, **kwargs) -> requests.Response:
        """THE chokepoint: every request to Apple Business (token and API) goes out here, after
        the account's shared rate limiter (and any Retry-After pause)."""
        try:
            self.rate_limiter.acquire(self.limiter_key, rate=self.requests_per_minute, max_wait=self.retry_budget)
        except ratelimit.RateLimitPaused as exc:
            raise RateLimitedError(
                "Requests to Apple Business are paused (it asked to wait); the sync will go on later.",
                retry_after=exc.wait,
            ) from None
        except (RedisError, OSError) as exc:
            raise ServiceUnavailableError(f"The shared rate limiter is unavailable ({type(exc).__name__}).") from None
        headers = {"Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        self.requests_sent += 1
        try:
            return self.session.request(
                method, url, headers=headers, timeout=self.timeout, allow_redirects=False, **kwargs
            )
        except requests.exceptions.RequestException as exc:
            raise ServiceUnavailableError(
                f"Apple Business could not be reached ({type(exc).__name__}); the sync will go on later."
            ) from None

    # ---- the access token -----------------------------------------------------------------

    def access_token(self) -> str:
        """The shared access token, fetched (single-flight) when absent or about to expire."""
        cached = self._store_get(self.cache_key)
        if cached:
            return cached
        lock_key, lock = self.cache_key + ":lock", uuid.uuid4().hex
        deadline = time.monotonic() + 15
        while not self._store_cas(lock_key, None, lock, _REFRESH_LOCK_SECONDS):
            time.sleep(0.1)  # another worker is fetching it: use theirs
            cached = self._store_get(self.cache_key)
            if cached:
                return cached
            if time.monotonic() > deadline:
                break  # the holder died: go ahead
        try:
            token, lifetime = self._fetch_token()
            ttl = max(1, lifetime - min(TOKEN_MARGIN, lifetime // 5))
            current = self._store_get(self.cache_key)
            self._store_cas(self.cache_key, current, token, ttl)
            return token
        finally:
            self._store_cad(lock_key, lock)

    def _invalidate(self, token: str) -> None:
        self._store_cad(self.cache_key, token)

    def client_assertion(self, *, now: float | None = None) -> str:
        """A fresh ES256 client assertion (iss = sub = client id, aud = Apple's v2 token URL)."""
        issued = int(now if now is not None else time.time())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": ASSERTION_AUDIENCE,
            "iat": issued,
            "exp": issued + ASSERTION_LIFETIME,
            "jti": str(uuid.uuid4()),
        }
        return jwt.encode(claims, self._key, algorithm="ES256", headers={"kid": self.key_id})

    def _fetch_token(self) -> tuple[str, int]:
        form = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": self.client_assertion(),
            "scope": SCOPE,
        }
        response = self._send("POST", self.token_url, data=form)
        data = _json(response)
        if response.status_code in (400, 401):
            detail = data.get("error_description") or data.get("error") if isinstance(data, dict) else ""
            raise BusinessAuthError(
                "Apple Business did not accept the API account (client id, key id or private key)"
                + (f": “{str(detail)[:200]}”." if detail else "."),
                http_status=response.status_code,
                apple_message=str(detail or "")[:200] or None,
            )
        if response.status_code >= 300:
            raise _status_error(response, data)
        if not isinstance(data, dict) or not data.get("access_token"):
            raise ServiceUnavailableError("Apple Business sent no access token; the sync will go on later.")
        return str(data["access_token"]), int(data.get("expires_in") or 3600)

    # The shared store is infrastructure: its failures are transient.
    def _store_get(self, key: str) -> str | None:
        return self._store_call(self.token_store.get, key)

    def _store_cas(self, key: str, expected: str | None, value: str, ttl: int) -> bool:
        return self._store_call(self.token_store.compare_and_set, key, expected, value, ttl)

    def _store_cad(self, key: str, expected: str) -> None:
        self._store_call(self.token_store.compare_and_delete, key, expected)

    @staticmethod
    def _store_call(func, *args):
        try:
            return func(*args)
        except (ApnsUnavailableError, RedisError, OSError) as exc:
            raise ServiceUnavailableError(f"The shared token cache is unavailable ({type(exc).__name__}).") from None


# ------------------------------------------------------------------------------------ parsing


def _backoff(base: float, cap: float, attempt: int) -> tuple[float, float]:
    top = min(cap, base * (2**attempt))
    return top / 2, top


def _json(response: requests.Response) -> Any:
    try:
        return json.loads(response.content) if response.content and response.content.strip() else None
    except (ValueError, UnicodeDecodeError):
        return None


def _api_result(response: requests.Response) -> dict:
    data = _json(response)
    if response.status_code >= 300:
        raise _status_error(response, data)
    if not isinstance(data, dict):
        raise ServiceUnavailableError(
            f"Apple Business sent an unreadable answer (HTTP {response.status_code}); the sync will go on later.",
            http_status=response.status_code,
        )
    return data


def _first_error(data: Any) -> dict:
    errors = data.get("errors") if isinstance(data, dict) else None
    return errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}


def _status_error(response: requests.Response, data: Any) -> Exception:
    """Map an HTTP status and Apple's ``errors`` body (code, title, detail) to a named error
    (https://developer.apple.com/documentation/applebusinessapi/errorresponse)."""
    status = response.status_code
    error = _first_error(data)
    code, detail = _s(error.get("code")), _s(error.get("detail")) or _s(error.get("title"))
    common = {"http_status": status, "apple_message": (f"{code}: {detail}" if code else detail)[:300] or None}
    retry_after = parse_retry_after(response.headers.get("Retry-After"), server_date=response.headers.get("Date"))
    if status == 429:
        return RateLimitedError(
            "Apple Business asked to slow down (too many requests); the sync will go on later.",
            retry_after=retry_after,
            **common,
        )
    if status >= 500:
        return ServiceUnavailableError(
            f"Apple Business is unavailable (HTTP {status}); the sync will go on later.",
            retry_after=retry_after,
            **common,
        )
    if status == 401:
        return BusinessAuthError("Apple Business did not accept the access token.", **common)
    if status == 403:
        return BusinessNotPermittedError(
            "The Apple Business API account's role may not read this (give it the user and device permissions).",
            **common,
        )
    if status == 404:
        return BusinessNotFoundError(f"Apple Business has no such record ({detail or 'not found'}).", **common)
    return InvalidRequestError(f"Apple Business rejected the request (HTTP {status}: {detail or code}).", **common)


def _page(data: dict) -> Page:
    links = data.get("links") or {}
    paging = (data.get("meta") or {}).get("paging") or {}
    next_url = links.get("next") if isinstance(links, dict) else None
    if next_url and not str(next_url).startswith("http"):
        next_url = urljoin(str(links.get("self") or ""), str(next_url)) if links.get("self") else str(next_url)
    if not next_url and paging.get("nextCursor"):
        self_url = str(links.get("self") or "")
        base = self_url.split("?")[0]
        next_url = (
            f"{base}?limit={paging.get('limit') or PAGE_LIMIT}&cursor={quote(str(paging['nextCursor']), safe='')}"
            if base
            else None
        )
    total = paging.get("total")
    items = data.get("data")
    return Page(
        items=[i for i in items if isinstance(i, dict)] if isinstance(items, list) else [],
        next_url=str(next_url) if next_url else None,
        total=int(total) if isinstance(total, int | float) else None,
        raw_meta=paging,
    )
