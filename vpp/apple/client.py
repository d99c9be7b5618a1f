"""Client for Apple's "App, Book, and Subscription Management" service (VPP v2).

The ONLY module that speaks HTTP to Apple (or to the sandbox, or any compatible server).
It returns typed dataclasses and raises named errors split into *transient* (retry later)
and *permanent* (show the admin). Apple's behaviour that it relies on is described, with
Apple's public documentation as the source, in docs/apple-vpp.md; the #anchors below are its sections.

Threading: a ``VppClient`` holds one ``requests.Session``; use one client per thread/task.
The rate limiter and the Service Config cache are shared process-wide (and the limiter
across processes through Redis), so creating many clients is cheap and safe.

Secrets: the sToken is only ever put in the Authorization header. It is never logged,
never put in an exception message, and the limiter keys on a hash of it.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from importlib import metadata
from typing import Any

import requests
from redis.exceptions import RedisError

from vpp.apple import ratelimit
from vpp.apple.errors import (
    _RATE_LIMIT_NUMBERS,
    _TOO_MANY_NUMBERS,
    EventTimeoutError,
    InvalidRequestError,
    OtherManagerError,
    RateLimitedError,
    RateLimiterUnavailableError,
    ServiceUnavailableError,
    TokenInvalidError,
    TransientVppError,
    VppError,
    error_for,
    parse_retry_after,
)
from vpp.apple.types import (
    Asset,
    Assignment,
    BatchOutcome,
    ClientConfig,
    EventStatus,
    MdmInfo,
    RawPage,
    RequestUser,
    ResponseMeta,
    ServiceConfig,
    UserPage,
    VppApiUser,
    _int,
    _str,
    managed_by_other_mdm,
)

logger = logging.getLogger(__name__)

APPLE_BASE_URL = "https://vpp.itunes.apple.com/mdm/v2"

SERVICE_CONFIG_TTL = 300.0  # Apple: re-read limits/URLs every 5 minutes (docs/apple-vpp.md#service-config)


def _user_agent() -> str:
    try:
        version = metadata.version("kmconsole")
    except metadata.PackageNotFoundError:
        version = "0"
    return f"kmconsole/{version}"


USER_AGENT = _user_agent()


# ---------------------------------------------------------------------------------------
# Service Config cache (process-wide, per base URL)
# ---------------------------------------------------------------------------------------

_config_lock = threading.Lock()
_config_cache: dict[str, tuple[float, ServiceConfig]] = {}


def clear_service_config_cache() -> None:
    with _config_lock:
        _config_cache.clear()


def _cached_config(base_url: str) -> ServiceConfig | None:
    with _config_lock:
        entry = _config_cache.get(base_url)
    if entry and time.monotonic() - entry[0] < SERVICE_CONFIG_TTL:
        return entry[1]
    return None


def _store_config(base_url: str, config: ServiceConfig) -> None:
    with _config_lock:
        _config_cache[base_url] = (time.monotonic(), config)


# ---------------------------------------------------------------------------------------
# The client
# ---------------------------------------------------------------------------------------


def _dedupe(items: Sequence, key) -> list:
    """Keep the first occurrence of each key, in order (Apple rejects duplicates: 9715/9704)."""
    seen: set = set()
    unique = []
    for item in items:
        k = key(item)
        if k not in seen:
            seen.add(k)
            unique.append(item)
    return unique


def _chunks(items: list, size: int) -> list[list]:
    size = max(1, size)
    return [items[i : i + size] for i in range(0, len(items), size)]


class UserListing:
    """GET /users, streamed page by page (docs/apple-vpp.md#users, #paging).

    Iterating yields VppApiUser records; ``pages()`` yields whole pages. Pages are fetched
    lazily. ``version_id`` is the FIRST page's versionId (fetches page 0 if needed) — keep it
    for the next delta sync (``since_version_id``).
    """

    def __init__(self, client: VppClient, params: dict[str, str]):
        self._client = client
        self._params = params
        self._first: UserPage | None = None

    @property
    def version_id(self) -> str | None:
        return self._first_page().version_id

    def _first_page(self) -> UserPage:
        if self._first is None:
            self._first = self._client._get_user_page(self._params, 0)
        return self._first

    def pages(self) -> Iterator[UserPage]:
        fetch = partial(self._client._get_user_page, self._params)
        yield from _iter_pages(self._first_page(), fetch, parallel=self._client.parallel_requests)

    def __iter__(self) -> Iterator[VppApiUser]:
        for page in self.pages():
            yield from page.users


def _next_page_index(page) -> int | None:
    """Follow nextPageIndex (docs/apple-vpp.md#paging). If it is absent but totalPages says more
    pages exist, still ask for the next one: Apple's docs conflict on paging, and stopping early would
    make a sync believe users are gone from VPP. A 9650 answer then ends the listing."""
    if page.next_page_index is not None:
        return page.next_page_index
    if page.total_pages is not None and page.current_page_index + 1 < page.total_pages:
        return page.current_page_index + 1
    return None


def _iter_pages(first, fetch, *, parallel: int) -> Iterator:
    """Yield FIRST and the pages after it, in order, following nextPageIndex (docs/apple-vpp.md#paging).

    Pages that the latest totalPages says exist are fetched ahead, up to PARALLEL at once
    (Apple allows five parallel page requests), so round-trip latency does not cap a sync
    below the rate limit. Each page is only yielded if it is the one the previous page points
    to; otherwise the prefetched pages are dropped and the walk goes on one page at a time.
    """
    yield first
    last, seen = first, {first.current_page_index}
    pool = ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="vpp-page") if parallel > 1 else None
    ahead: collections.deque = collections.deque()
    scheduled = first.current_page_index
    try:
        while True:
            while pool and len(ahead) < parallel and last.total_pages and scheduled + 1 < last.total_pages:
                scheduled += 1
                ahead.append((scheduled, pool.submit(fetch, scheduled)))
            next_index = _next_page_index(last)
            if next_index is None:
                return
            if next_index in seen:
                raise ServiceUnavailableError("Apple's list repeated a page; it will be read again later.")
            seen.add(next_index)
            if ahead and ahead[0][0] == next_index:
                future = ahead.popleft()[1]
            else:
                for _, stale in ahead:
                    stale.cancel()
                ahead.clear()
                future = None
                scheduled = max(scheduled, next_index)
            try:
                page = future.result() if future else fetch(next_index)
            except InvalidRequestError as exc:
                if exc.error_number == 9650 and last.next_page_index is None:
                    return  # our totalPages guess overshot (see _next_page_index)
                raise
            yield page
            last = page
    finally:
        if pool:
            pool.shutdown(wait=True, cancel_futures=True)


class VppClient:
    """One content token against one base URL (Apple, the sandbox, or a compatible server)."""

    def __init__(
        self,
        s_token: str,
        *,
        base_url: str = APPLE_BASE_URL,
        rate_limiter: ratelimit.RateLimiter | None = None,
        timeout: tuple[float, float] = (5, 30),
        session: requests.Session | None = None,
        max_retries: int = 4,
        backoff_base: float = 1.0,
        backoff_max: float = 30.0,
        retry_budget: float = 120.0,
        parallel_requests: int = 5,
        manager_id: str | None = None,
        other_manager: MdmInfo | None = None,
        budget: float | None = None,
        on_wait: Callable[[TransientVppError, float], None] | None = None,
    ):
        """``budget`` (seconds, for web requests): every call made through this client, with its
        retries and waits, ends within ``budget`` seconds of the client's creation; a Retry-After
        or rate-limit pause longer than what is left raises at once (``retry_after`` set) instead
        of sleeping through it. Without it, each call may take ``retry_budget`` seconds (the
        background jobs). ``on_wait(error, seconds)`` is called before the client waits to retry
        (a job records what it is waiting for). See docs/operations.md#timeouts."""
        if not s_token or not s_token.strip():
            raise TokenInvalidError("No content token has been uploaded.")
        self._s_token = "".join(s_token.split())
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        self.rate_limiter = rate_limiter if rate_limiter is not None else ratelimit.default_rate_limiter()
        self.limiter_key = ratelimit.token_key(self._s_token)
        # Retry policy for transient errors inside one call. Kept modest: the job layer
        # (Celery) owns the long retries and reschedules with Retry-After (docs/vpp-jobs.md#retries-and-waits).
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.retry_budget = retry_budget
        self.deadline: float | None = None
        if budget is not None:
            self.retry_budget = min(retry_budget, budget)
            self.deadline = time.monotonic() + budget
            self.max_retries = min(max_retries, 1)  # a page tries twice at most, then says why
        self.on_wait = on_wait
        # Batches in flight at once (Apple: at most five parallel page requests, docs/apple-vpp.md#paging; we use
        # the same cap for batched POSTs).
        self.parallel_requests = parallel_requests
        self.last_meta = ResponseMeta()  # envelope of the latest successful response
        # Our mdmInfo.id: when given, an answer naming another manager stops this client
        # (``other_manager`` is set; every later request raises OtherManagerError unsent).
        self.manager_id = manager_id
        self.other_manager = other_manager

    def __repr__(self) -> str:
        return f"<VppClient {self.base_url}>"  # never the token

    # ---- configuration ----------------------------------------------------------------

    def service_config(self, *, refresh: bool = False) -> ServiceConfig:
        """GET /service/config, cached 5 minutes per base URL.

        It carries no Authorization header (docs/apple-vpp.md#service-config).
        """
        if not refresh:
            cached = _cached_config(self.base_url)
            if cached is not None:
                return cached
        data = self._request("GET", "/service/config", auth=False, idempotent=True)
        config = ServiceConfig.from_json(data)
        _store_config(self.base_url, config)
        return config

    def client_config(self) -> ClientConfig:
        return ClientConfig.from_json(self._request("GET", "/client/config", idempotent=True))

    def update_client_config(
        self,
        *,
        mdm_info: MdmInfo | dict | None = None,
        notification_url: str | None = None,
        notification_auth_token: str | None = None,
        notification_types: Sequence[str] | None = None,
    ) -> ClientConfig:
        """POST /client/config with only the fields given (docs/apple-vpp.md#mdminfo, #notifications).

        Setting configuration is idempotent (same body → same state), so it is retried like a read.
        """
        body: dict[str, Any] = {}
        if mdm_info is not None:
            body["mdmInfo"] = mdm_info.to_json() if isinstance(mdm_info, MdmInfo) else dict(mdm_info)
        if notification_url is not None:
            body["notificationUrl"] = notification_url
        if notification_auth_token is not None:
            body["notificationAuthToken"] = notification_auth_token
        if notification_types is not None:
            body["notificationTypes"] = list(notification_types)
        return ClientConfig.from_json(self._request("POST", "/client/config", json_body=body, idempotent=True))

    # ---- users ------------------------------------------------------------------------

    def iter_users(
        self,
        *,
        active_only: bool = False,
        retired_only: bool = False,
        client_user_id: str | None = None,
        since_version_id: str | None = None,
    ) -> UserListing:
        params: dict[str, str] = {}
        if active_only:
            params["activeOnly"] = "true"
        if retired_only:
            params["retiredOnly"] = "true"
        if client_user_id:
            params["clientUserId"] = client_user_id
        if since_version_id:
            params["sinceVersionId"] = since_version_id
        return UserListing(self, params)

    def _get_user_page(self, params: dict[str, str], page_index: int) -> UserPage:
        query = dict(params)
        if page_index:
            query["pageIndex"] = str(page_index)  # omitted for page 0, as Apple's examples do
        data = self._request("GET", "/users", params=query, idempotent=True)
        users = [VppApiUser.from_json(u) for u in data.get("users") or [] if isinstance(u, dict)]
        next_index = data.get("nextPageIndex")
        total = data.get("totalPages")
        return UserPage(
            users=users,
            current_page_index=_int(data.get("currentPageIndex"), page_index),
            next_page_index=_int(next_index) if next_index is not None else None,
            total_pages=_int(total) if total is not None else None,
            version_id=_str(data.get("versionId")),
            meta=ResponseMeta.from_json(data),
        )

    def get_user(self, client_user_id: str) -> VppApiUser | None:
        """The active (Registered/Associated) record for this clientUserId, or None.

        Retired history rows share the clientUserId (docs/apple-vpp.md#users), so they are skipped here.
        """
        for user in self.iter_users(client_user_id=client_user_id, active_only=True):
            if user.client_user_id == client_user_id and user.active:
                return user
        return None

    def split_users(self, users: Sequence[RequestUser]) -> list[list[RequestUser]]:
        """The request batches create/update would send: de-duplicated, at most maxUsers each."""
        return _chunks(self._unique_users(users), self.service_config().max_users)

    def create_users(self, users: Sequence[RequestUser]) -> list[str]:
        """POST /users/create in batches of ≤ maxUsers; the event ids, in batch order (docs/apple-vpp.md#users)."""
        return self._manage_users("/users/create", users)

    def update_users(self, users: Sequence[RequestUser]) -> list[str]:
        return self._manage_users("/users/update", users)

    def retire_users(self, client_user_ids: Sequence[str]) -> list[str]:
        return self._manage_users("/users/retire", [RequestUser(cid) for cid in client_user_ids])

    def _unique_users(self, users: Sequence[RequestUser]) -> list[RequestUser]:
        unique = _dedupe(users, key=lambda u: u.client_user_id)
        for user in unique:
            if not user.client_user_id or not str(user.client_user_id).strip():
                raise InvalidRequestError("A user without a client user id cannot be sent to Apple.")
        return unique

    def _manage_users(self, path: str, users: Sequence[RequestUser]) -> list[str]:
        return self._post_in_batches(
            path,
            self._unique_users(users),
            "maxUsers",
            body_for=lambda batch: {"users": [u.to_json() for u in batch]},
            key=lambda user: user.client_user_id,
        )

    def _post_in_batches(self, path: str, items: list, limit_name: str, *, body_for, key) -> list[str]:
        """POST ITEMS in requests of at most Service Config's LIMIT_NAME; the event ids in batch order.

        The first batch goes alone: it proves the token and the limit. A 9714/9701 there means
        Apple lowered the limit since Service Config was cached (up to 5 min); a synchronous
        400 queues nothing (docs/apple-vpp.md#errors), so the limits are re-read and the items re-split, once.
        The other batches go up to ``parallel_requests`` at a time, so that round-trip latency
        does not hold throughput below maxRequestPerSecond (the limiter still spaces them).
        Once a batch fails, no new batch starts. The first error (in batch order) is raised
        with ``.batches`` (a BatchOutcome per batch) and ``.event_ids`` (the accepted ones).
        """
        if not items:
            return []
        outcomes = self._split_outcomes(items, limit_name, key)
        self._send_batch(path, outcomes[0], body_for)
        error = outcomes[0].error
        if isinstance(error, InvalidRequestError) and error.error_number in _TOO_MANY_NUMBERS:
            self.service_config(refresh=True)
            outcomes = self._split_outcomes(items, limit_name, key)
            self._send_batch(path, outcomes[0], body_for)
        if outcomes[0].error is None and len(outcomes) > 1:
            self._send_in_parallel(path, outcomes[1:], body_for)
        errors = [o.error for o in outcomes if o.error is not None]
        if errors:
            errors[0].batches = outcomes
            errors[0].event_ids = [o.event_id for o in outcomes if o.event_id]
            raise errors[0]
        return [o.event_id for o in outcomes]

    def _split_outcomes(self, items: list, limit_name: str, key) -> list[BatchOutcome]:
        size = self.service_config().limit(limit_name)
        return [BatchOutcome(items=batch, keys=[key(i) for i in batch]) for batch in _chunks(items, size)]

    def _send_batch(self, path: str, outcome: BatchOutcome, body_for) -> None:
        try:
            data = self._request("POST", path, json_body=body_for(outcome.items), idempotent=False)
            outcome.event_id = _event_id(data)
        except VppError as exc:
            outcome.error = exc

    def _send_in_parallel(self, path: str, outcomes: list[BatchOutcome], body_for) -> None:
        failed = threading.Event()

        def send(outcome: BatchOutcome) -> None:
            if failed.is_set():
                return  # stay "not sent": the caller can resend these safely
            self._send_batch(path, outcome, body_for)
            if outcome.error is not None:
                failed.set()

        # One Session shared by the threads: urllib3's connection pool is thread-safe and
        # these calls keep no per-request state on the session.
        workers = max(1, min(self.parallel_requests, len(outcomes)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vpp-batch") as pool:
            list(pool.map(send, outcomes))

    # ---- assets -----------------------------------------------------------------------

    def list_assets(self) -> list[Asset]:
        assets: list[Asset] = []
        for data in self._paged("/assets", {}):
            assets.extend(Asset.from_json(a) for a in data.get("assets") or [] if isinstance(a, dict))
        return assets

    def revoke_assets(self, *, client_user_ids: Sequence[str]) -> list[str]:
        """POST /assets/revoke: all revocable licences of these users, ≤ maxRevokeClientUserIds per request."""
        unique = _dedupe([str(c) for c in client_user_ids if str(c).strip()], key=lambda c: c)
        return self._post_in_batches(
            "/assets/revoke",
            unique,
            "maxRevokeClientUserIds",
            body_for=lambda batch: {"clientUserIds": batch},
            key=lambda client_user_id: client_user_id,
        )

    def iter_assignments(
        self, *, client_user_id: str | None = None, adam_id: str | None = None, since_version_id: str | None = None
    ) -> Iterator[Assignment]:
        params = {"includeUserState": "true"}
        if client_user_id:
            params["clientUserId"] = client_user_id
        if adam_id:
            params["adamId"] = str(adam_id)
        if since_version_id:
            params["sinceVersionId"] = since_version_id
        for data in self._paged("/assignments", params):
            for item in data.get("assignments") or []:
                if isinstance(item, dict):
                    yield Assignment.from_json(item)

    def _paged(self, path: str, params: dict[str, str]) -> Iterator[dict]:
        """GET a paged list (assets, assignments) page by page (docs/apple-vpp.md#paging); yields each page's JSON."""
        fetch = partial(self._get_raw_page, path, params)
        for page in _iter_pages(fetch(0), fetch, parallel=self.parallel_requests):
            yield page.data

    def _get_raw_page(self, path: str, params: dict[str, str], page_index: int) -> RawPage:
        query = dict(params)
        if page_index:
            query["pageIndex"] = str(page_index)
        data = self._request("GET", path, params=query, idempotent=True)
        return RawPage.from_json(data, page_index)

    # ---- events -----------------------------------------------------------------------

    def event_status(self, event_id: str) -> EventStatus:
        data = self._request("GET", "/status", params={"eventId": event_id}, idempotent=True)
        return EventStatus.from_json(event_id, data)

    def wait_for_event(self, event_id: str, *, poll_interval: float | None = None, timeout: float = 600) -> EventStatus:
        """Poll GET /status until COMPLETE or FAILED (docs/apple-vpp.md#events); EventTimeoutError at the deadline.

        Apple asks for ≥ 30 s between polls of a PENDING event; the default interval is
        settings.VPP_EVENT_POLL_INTERVAL (30 in production, 1 for the sandbox).
        """
        if poll_interval is None:
            from django.conf import settings

            poll_interval = float(settings.VPP_EVENT_POLL_INTERVAL)
        deadline = time.monotonic() + timeout
        while True:
            status = self.event_status(event_id)
            if status.finished:
                return status
            if time.monotonic() + poll_interval > deadline:
                raise EventTimeoutError(
                    f"Apple has not finished the request yet (event still {status.status or 'pending'}"
                    f" after {timeout:.0f} s).",
                    event_id=event_id,
                    last_status=status,
                )
            time.sleep(poll_interval)

    # ---- HTTP -------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json_body: dict | None = None,
        auth: bool = True,
        idempotent: bool,
    ) -> dict:
        """One logical call with bounded retries for transient errors.

        Retried: every transient error of an idempotent call (reads, client-config POST),
        and for any call the answers that prove Apple did NOT act — 429/9646 and
        503/9729-style refusals and failures to connect at all.
        NOT retried: async POSTs (create/update/retire/revoke) after a timeout, a dropped
        connection or a 500 — the request may have reached Apple and been queued, and
        sending it again could create duplicates (9716) or act twice. Those raise with
        ``outcome_unknown=True``; the job layer owns idempotency and checks event status /
        reads the users back before resending. Permanent errors are never retried.
        """
        started = time.monotonic()
        attempt = 0
        while True:
            began = time.monotonic()
            try:
                self._check_deadline()
                return self._attempt(method, path, params=params, json_body=json_body, auth=auth, idempotent=idempotent)
            except TransientVppError as exc:
                if exc.retry_after:
                    # Retry-After throttles the whole token, not this request: pause every caller.
                    # A limiter that is down is reported by the next slot.
                    with contextlib.suppress(RedisError, OSError):
                        self.rate_limiter.pause(self.limiter_key, exc.retry_after)
                if exc.outcome_unknown or attempt >= self.max_retries:
                    raise
                delay = self._retry_delay(exc, attempt)
                now = time.monotonic()
                if now - started + delay > self.retry_budget:
                    raise
                if self.deadline is not None and now + delay + (now - began) > self.deadline:
                    raise  # another try would not end within the caller's budget
                attempt += 1
                logger.info("VPP %s %s: %s; retry %d in %.1f s", method, path, type(exc).__name__, attempt, delay)
                if self.on_wait is not None:
                    self.on_wait(exc, delay)
                if not exc.retry_after:
                    time.sleep(delay)  # the limiter's pause does the waiting when Apple said how long

    def _left(self) -> float | None:
        """Seconds left of the caller's budget (None without one)."""
        return None if self.deadline is None else self.deadline - time.monotonic()

    def _check_deadline(self) -> None:
        left = self._left()
        if left is not None and left <= 0:
            raise ServiceUnavailableError(
                "Apple's service did not answer within the time a page may wait; nothing more was sent."
            )

    def _retry_delay(self, exc: TransientVppError, attempt: int) -> float:
        if exc.retry_after:
            return exc.retry_after
        # Exponential backoff, jittered over the upper half of the cap (Apple: back off on 9646/429,
        # docs/apple-vpp.md#rate-limit).
        cap = min(self.backoff_max, self.backoff_base * (2**attempt))
        return random.uniform(cap / 2, cap)

    def _attempt(self, method, path, *, params, json_body, auth, idempotent) -> dict:
        if auth and self.other_manager is not None:
            raise OtherManagerError(self.other_manager.name)  # nothing more goes to Apple
        self._acquire_slot(auth=auth)
        headers = {"Accept": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self._s_token}"
        url = f"{self.base_url}{path}"
        began = time.monotonic()
        try:
            response = self.session.request(
                method,
                url,
                params=params,
                json=json_body,
                headers=headers,
                timeout=self._timeout(),
                # Never follow redirects: requests would resend the body elsewhere, and a
                # redirect from Apple's API is not a documented answer.
                allow_redirects=False,
            )
        except requests.exceptions.ConnectTimeout:
            raise ServiceUnavailableError("Apple's service could not be reached in time.") from None
        except requests.exceptions.Timeout:
            raise ServiceUnavailableError(
                "Apple's service did not answer in time.",
                outcome_unknown=not idempotent,
            ) from None
        except requests.exceptions.ConnectionError as exc:
            raise ServiceUnavailableError(
                "Could not connect to Apple's service.",
                outcome_unknown=not idempotent and not _never_connected(exc),
            ) from None
        except requests.exceptions.RequestException as exc:
            raise InvalidRequestError(f"The request to Apple could not be sent ({type(exc).__name__}).") from None
        logger.debug("VPP %s %s -> %s in %.3f s", method, path, response.status_code, time.monotonic() - began)
        return self._parse(response, idempotent=idempotent)

    def _timeout(self) -> tuple[float, float]:
        left = self._left()
        if left is None:
            return self.timeout
        left = max(0.1, left)
        return (min(self.timeout[0], left), min(self.timeout[1], left))

    def _acquire_slot(self, *, auth: bool) -> None:
        """Wait for the token's rate limiter (and any Retry-After pause) before a request.

        Service Config carries no token, so Apple cannot count it against the token's
        maxRequestPerSecond (and we only learn that rate from it): it takes no slot, but
        it still honours a pause.
        """
        try:
            if auth:
                rate = self.service_config().max_request_per_second
                left = self._left()
                max_wait = self.retry_budget if left is None else max(0.0, min(self.retry_budget, left))
                self.rate_limiter.acquire(self.limiter_key, rate=rate, max_wait=max_wait)
            else:
                self._wait_out_pause()
        except ratelimit.RateLimitPaused as exc:
            raise RateLimitedError(
                "Apple asked us to wait (Retry-After), or requests for this content token are queued"
                " behind Apple's rate limit.",
                retry_after=exc.wait,
            ) from None
        except (RedisError, OSError) as exc:  # the shared limiter is infrastructure: retry later
            raise RateLimiterUnavailableError(
                f"Redis (the shared rate limiter and message broker) is unreachable ({type(exc).__name__})."
            ) from None

    def _wait_out_pause(self) -> None:
        pause = self.rate_limiter.paused_for(self.limiter_key)
        left = self._left()
        if pause > self.retry_budget or (left is not None and pause > left):
            raise ratelimit.RateLimitPaused(pause)
        if pause > 0:
            time.sleep(pause)

    def _parse(self, response: requests.Response, *, idempotent: bool) -> dict:
        status = response.status_code
        data = _json_body(response)
        # An HTTP-date Retry-After counts from the answer's own Date, not our clock (docs/apple-vpp.md#rate-limit).
        retry_after = parse_retry_after(response.headers.get("Retry-After"), server_date=response.headers.get("Date"))
        # Any body with errorNumber is an error, whatever the HTTP status (docs/apple-vpp.md#errors).
        if isinstance(data, dict) and data.get("errorNumber") not in (None, "", 0):
            number = _int(data.get("errorNumber"), default=0) or None
            info = data.get("errorInfo")
            raise error_for(
                http_status=status,
                error_number=number,
                apple_message=_str(data.get("errorMessage")),
                retry_after=retry_after,
                outcome_unknown=not idempotent and _may_have_acted(status, number),
                error_info=info if isinstance(info, dict) else None,
            )
        if status >= 300:
            raise error_for(
                http_status=status,
                retry_after=retry_after,
                outcome_unknown=not idempotent and _may_have_acted(status, None),
            )
        if not isinstance(data, dict):
            kind = response.headers.get("Content-Type", "no content type").split(";")[0]
            raise ServiceUnavailableError(
                f"Apple's service sent an unreadable answer (HTTP {status}, {kind});"
                " the VPP server address may be wrong or Apple may be in maintenance.",
                http_status=status,
                retry_after=retry_after,
                outcome_unknown=not idempotent,
            )
        self.last_meta = ResponseMeta.from_json(data)
        self._observe_manager(self.last_meta.mdm_info, idempotent=idempotent)
        return data

    def _observe_manager(self, mdm_info: MdmInfo | None, *, idempotent: bool) -> None:
        """Stop at an answer whose mdmInfo names another manager (docs/apple-vpp.md#mdminfo).

        A read raises ``OtherManagerError`` at once; a write's answer is returned (Apple has
        acted on it, and the caller must record that) and the next request raises unsent.
        """
        if self.manager_id is None or not managed_by_other_mdm(mdm_info, self.manager_id):
            return
        self.other_manager = mdm_info
        if idempotent:
            raise OtherManagerError(mdm_info.name)


def _json_body(response: requests.Response) -> Any:
    if not response.content or not response.content.strip():
        return None
    try:
        return json.loads(response.content)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None  # HTML error page, truncated body, absurd nesting...


def _event_id(data: dict) -> str:
    event_id = _str(data.get("eventId"))
    if not event_id:
        # Apple answered 200 without an event id: it may or may not have queued the work.
        raise ServiceUnavailableError(
            "Apple accepted the request but sent no event id; its result has to be checked by syncing users.",
            outcome_unknown=True,
        )
    return event_id


def _may_have_acted(status: int, error_number: int | None) -> bool:
    """Could a failed POST still have been queued by Apple?

    429/9646 and 503/9729/9644 are refusals before any work; 4xx are validation failures
    (synchronous errors trigger no async processing, docs/apple-vpp.md#errors). A 500/9603 or other 5xx is unknown.
    """
    if error_number in _RATE_LIMIT_NUMBERS or error_number in {9729, 9644} or status in (429, 503):
        return False
    return status >= 500 or error_number == 9603


def _never_connected(exc: requests.exceptions.ConnectionError) -> bool:
    """True when the TCP connection was never established (refused, DNS), so nothing was sent."""
    from urllib3.exceptions import MaxRetryError, NameResolutionError, NewConnectionError

    reason = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    return isinstance(reason, NewConnectionError | NameResolutionError)
