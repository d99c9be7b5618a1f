"""The sandbox's behaviour: Apple's v2 semantics over the ``Store`` (docs/apple-vpp.md; README.md names the
choices made where Apple's docs are silent).

Every public method runs under ``self.lock``. Async calls (users/*, assets/*) only validate and
queue an event; ``advance()`` (called before every request and by a ticker thread) applies the
events whose PENDING time is over and sends the notifications.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import heapq
import math
import random
import re
import secrets
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from vpp.sandbox import notify
from vpp.sandbox.errors import ERRORS, ApiError, error_body
from vpp.sandbox.options import Options
from vpp.sandbox.store import Store
from vpp.sandbox.tokens import MalformedToken, SToken, decode_token, format_date

NOTIFICATION_TYPES = [
    "ASSET_MANAGEMENT",
    "USER_MANAGEMENT",
    "USER_ASSOCIATED",
    "ASSET_COUNT",
    "SUBSCRIPTION_MANAGEMENT",
    "SUBSCRIPTION_COUNT",
    "UNLIMITED_ASSET",
]
ACTIVE = ("Registered", "Associated")
NOTIFICATION_CHUNK = 100  # Apple: at most 100 elements per notification
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
ASSIGNMENT_FILTERS = ("adamId", "clientUserId", "serialNumber", "pricingParam")
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def id_hash(account: str) -> str:
    """Apple's idHash of an Apple Account: base64 (with ``/``, ``+`` and ``=``), as Apple's answers carry it."""
    return base64.b64encode(hashlib.sha256(f"apple-account:{account.lower()}".encode()).digest()).decode()


def response_user(record: dict[str, Any]) -> dict[str, Any]:
    """Apple's ResponseUser: no managedAppleId, no record number (docs/apple-vpp.md#users)."""
    user = {"clientUserId": record["clientUserId"], "status": record["status"]}
    for key in ("email", "inviteCode", "idHash"):
        if record.get(key):
            user[key] = record[key]
    return user


@dataclass
class Counters:
    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.endpoints: dict[str, int] = {}
        self.users_created = 0
        self.create_calls = 0
        self.requests: deque[dict[str, Any]] = deque(maxlen=100_000)

    def record(self, *, method: str, path: str, status: int, location: str | None, at: float) -> None:
        key = f"{method} {path}"
        with self.lock:
            self.endpoints[key] = self.endpoints.get(key, 0) + 1
            self.requests.append({"t": at, "method": method, "path": path, "status": status, "location": location})

    def to_json(self, *, requests: bool = True, since: float = 0.0) -> dict[str, Any]:
        with self.lock:
            data = {
                "endpoints": dict(self.endpoints),
                "users_created": self.users_created,
                "create_calls": self.create_calls,
                "total_requests": sum(self.endpoints.values()),
            }
            if requests:
                data["requests"] = [r for r in self.requests if r["t"] >= since]
            return data


class Sandbox:
    def __init__(self, options: Options | None = None, *, state_path: str | None = None):
        self.startup_options = options or Options()
        self.options = self.startup_options
        self.lock = threading.RLock()
        self.store = Store(state_path)
        self.counters = Counters()
        self.notifier = notify.Notifier(
            attempts=self.options.notification_attempts, retry_seconds=self.options.notification_retry_seconds
        )
        self.random = random.Random()
        self._rate: dict[str, deque[float]] = {}
        # While a user event runs: {idHash: clientUserIds holding it} (see _holders).
        self._event_holders: dict[str, set[str]] | None = None
        # Heap of (dueAt, location, eventId) for events still PENDING, so advance() is cheap.
        self._pending: list[tuple[float, str, str]] = [
            (e["dueAt"], name, e["eventId"])
            for name, loc in self.store.locations.items()
            for e in loc["events"].values()
            if e["eventStatus"] == "PENDING"
        ]
        heapq.heapify(self._pending)
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    # --- life cycle --------------------------------------------------------------------
    def start(self) -> None:
        self.notifier.start()
        self.store.start_flusher(self.lock)
        self._ticker = threading.Thread(target=self._tick, name="sandbox-events", daemon=True)
        self._ticker.start()

    def stop(self) -> None:
        self._stop.set()
        if self._ticker:
            self._ticker.join(timeout=5)
        self.notifier.stop()
        self.store.stop(self.lock)

    def _tick(self) -> None:
        while not self._stop.wait(0.05):
            self.advance()

    def set_options(self, changes: dict[str, Any]) -> Options:
        with self.lock:
            self.options = self.options.updated(changes)
            self.notifier.attempts = self.options.notification_attempts
            self.notifier.retry_seconds = self.options.notification_retry_seconds
            return self.options

    def reset(self, *, state: bool = True, faults: bool = True, counters: bool = True) -> None:
        with self.lock:
            if state:
                self.store.clear()
                self._rate.clear()
                self._pending.clear()
            if faults:
                self.options = self.startup_options
                self.notifier.attempts = self.options.notification_attempts
                self.notifier.retry_seconds = self.options.notification_retry_seconds
            if counters:
                self.counters.reset()
                self.notifier.reset()

    # --- auth, faults, envelope ----------------------------------------------------------
    def authenticate(self, header: str | None) -> SToken:
        if header is None or not header.strip():
            raise ApiError(9601)
        scheme, _, value = header.strip().partition(" ")
        if scheme != "Bearer" or not value.strip():
            raise ApiError(9722)
        try:
            token = decode_token(value)
        except MalformedToken:
            raise ApiError(9722) from None
        if token.raw in self.options.invalid_tokens:
            raise ApiError(9622)
        if token.raw in self.options.revoked_tokens:
            raise ApiError(9625)
        if token.raw in self.options.expired_tokens or token.expired():
            raise ApiError(9621)
        return token

    def injected_failure(self) -> ApiError | None:
        """Fault injection: the next N requests, or a share of them, get a 5xx with Retry-After."""
        with self.lock:
            opts = self.options
            if opts.fail_next > 0:
                self.options = opts.updated({"fail_next": opts.fail_next - 1})
            elif not (opts.fail_share and self.random.random() < opts.fail_share):
                return None
        error = ApiError(9729 if opts.fail_status == 503 else 9603, status=opts.fail_status)
        if opts.retry_after is not None:
            error.headers["Retry-After"] = retry_after_value(opts.retry_after, opts.retry_after_form, self.now())
        return error

    def injected_error(self, path: str) -> ApiError | None:
        """Fault injection: the first ``inject_errors`` entry matching PATH, answered once (see Options)."""
        with self.lock:
            queue = [dict(spec) for spec in self.options.inject_errors]
            for index, spec in enumerate(queue):
                if path.startswith(spec.get("path") or ""):
                    if spec.get("after", 0) > 0:  # let this many matching requests through first
                        spec["after"] -= 1
                        self.options = self.options.updated({"inject_errors": queue})
                        return None
                    del queue[index]
                    self.options = self.options.updated({"inject_errors": queue})
                    break
            else:
                return None
        number = int(spec["number"])
        cuids = [str(c) for c in spec.get("clientUserIds") or []]
        error = ApiError(number, status=spec.get("status"), clientUserIds=cuids)
        form = spec.get("body", "full")
        if form == "bare":
            error.body = {"errorNumber": number}
        elif form == "empty_info":
            error.body = {"errorNumber": number, "errorMessage": error.body["errorMessage"], "errorInfo": {}}
        return error

    def now(self) -> float:
        """The sandbox's clock: ours plus ``clock_offset`` (what its Date headers say)."""
        return time.time() + self.options.clock_offset

    def check_rate(self, location: str, now: float) -> None:
        """429/9646 beyond ``rps_limit`` requests in any one-second window (accepted requests only)."""
        limit = self.options.rps_limit
        if limit <= 0:
            return
        with self.lock:
            window = self._rate.setdefault(location, deque())
            while window and window[0] <= now - 1.0:
                window.popleft()
            if len(window) >= limit:
                error = ApiError(9646)
                if self.options.rate_limit_retry_after is not None:
                    error.headers["Retry-After"] = str(self.options.rate_limit_retry_after)
                raise error
            # Handler threads reach this lock out of arrival order: keep the window sorted, so
            # an earlier arrival never sits behind a later one where the trimming cannot reach it.
            bisect.insort(window, now)

    def location(self, token: SToken) -> dict[str, Any]:
        return self.store.location(token.location, token.org_name)

    def envelope(self, token: SToken, body: dict[str, Any]) -> dict[str, Any]:
        loc = self.location(token)
        lagging = self.options.reported_expiry.get(token.location)
        body["tokenExpirationDate"] = lagging or format_date(token.expires_at)
        body["uId"] = loc["uId"]
        mdm_info = loc["clientConfig"].get("mdmInfo")
        if mdm_info:
            body["mdmInfo"] = dict(mdm_info)
        return body

    # --- service config (no auth) --------------------------------------------------------
    def service_config(self, base_url: str) -> dict[str, Any]:
        api = f"{base_url}/mdm/v2"
        invite_base = (self.options.invite_base_url or base_url).rstrip("/")
        return {
            "errorCodes": [{"errorNumber": n, "errorMessage": m} for n, (_, m) in sorted(ERRORS.items())],
            "limits": dict(self.options.limits),
            "notificationTypes": list(NOTIFICATION_TYPES),
            "urls": {
                "invitationEmail": f"{invite_base}/invite?inviteCode=%25inviteCode%25",
                "clientConfig": f"{api}/client/config",
                "createUsers": f"{api}/users/create",
                "updateUsers": f"{api}/users/update",
                "retireUsers": f"{api}/users/retire",
                "getUsers": f"{api}/users",
                "getAssets": f"{api}/assets",
                "associateAssets": f"{api}/assets/associate",
                "disassociateAssets": f"{api}/assets/disassociate",
                "revokeAssets": f"{api}/assets/revoke",
                "getAssignments": f"{api}/assignments",
                "eventStatus": f"{api}/status",
                "contentMetadataLookup": f"{base_url}/metadata/lookup",
            },
        }

    # --- client config -------------------------------------------------------------------
    def client_config(self, token: SToken) -> dict[str, Any]:
        with self.lock:
            config = dict(self.location(token)["clientConfig"])
            config.pop("mdmInfo", None)  # the envelope adds it
            return self.envelope(token, config)

    def update_client_config(self, token: SToken, body: dict[str, Any]) -> dict[str, Any]:
        limits = self.options.limits
        changes: dict[str, Any] = {}
        if "mdmInfo" in body:
            changes["mdmInfo"] = validate_mdm_info(body["mdmInfo"], limits)
        url, auth = body.get("notificationUrl"), body.get("notificationAuthToken")
        if url is not None or auth is not None:
            changes.update(self._validate_notification_target(url, auth))
        if "notificationTypes" in body:
            types = body["notificationTypes"]
            if not isinstance(types, list) or any(t not in NOTIFICATION_TYPES for t in types):
                raise ApiError(9602, "notificationTypes must be a list of known notification types.")
            changes["subscribedNotificationTypes"] = list(dict.fromkeys(types))
        if changes.get("notificationUrl"):
            # Apple sends a TEST_NOTIFICATION and rejects the configuration if it is not delivered.
            # Sent outside the lock: the receiver may well call us back.
            with self.lock:
                uid = self.location(token)["uId"]
            payload = notify.envelope("TEST_NOTIFICATION", {}, uid)
            try:
                status = notify.post_once(changes["notificationUrl"], changes["notificationAuthToken"], payload)
            except Exception:  # noqa: BLE001 - whatever stops delivery makes the URL "unreachable"
                status = None
            if status is None or not 200 <= status < 300:
                raise ApiError(9728)
        with self.lock:
            loc = self.location(token)
            loc["clientConfig"].update(changes)
            if "notificationUrl" in changes and not changes["notificationUrl"]:
                for key in ("notificationUrl", "notificationAuthToken"):
                    loc["clientConfig"].pop(key, None)
            self.store.mark_dirty()
        return self.client_config(token)

    def _validate_notification_target(self, url: Any, auth: Any) -> dict[str, Any]:
        if not isinstance(url, str) or not isinstance(auth, str) or bool(url) != bool(auth):
            raise ApiError(9710)
        if not url:  # both empty: stop notifications (UNCONFIRMED in Apple's docs; our choice)
            return {"notificationUrl": "", "notificationAuthToken": ""}
        max_length = self.options.limits.get("maxNotificationLength", 512)
        if len(url) > max_length or len(auth) > max_length:
            raise ApiError(9711)
        parts = urlsplit(url)
        # Apple requires HTTPS. The sandbox also allows plain http:// to loopback hosts (and to any
        # host with --allow-http-notifications, for docker compose) so a local console can listen.
        http_ok = parts.scheme == "http" and (
            parts.hostname in LOOPBACK_HOSTS
            or (parts.hostname or "").startswith("127.")
            or self.options.allow_http_notifications
        )
        if not parts.hostname or not (parts.scheme == "https" or http_ok):
            raise ApiError(9712)
        return {"notificationUrl": url, "notificationAuthToken": auth}

    def _notify(self, loc: dict[str, Any], notification_type: str, notification: dict[str, Any]) -> None:
        config = loc["clientConfig"]
        url = config.get("notificationUrl")
        subscribed = config.get("subscribedNotificationTypes") or NOTIFICATION_TYPES  # none given = all
        if not url or notification_type not in subscribed:
            return
        payload = notify.envelope(notification_type, notification, loc["uId"])
        self.notifier.send(url, config["notificationAuthToken"], payload, drop=self.options.drop_notifications)

    # --- users: reads --------------------------------------------------------------------
    def get_users(self, token: SToken, query: dict[str, str]) -> dict[str, Any]:
        active_only = query_bool(query, "activeOnly")
        retired_only = query_bool(query, "retiredOnly")
        client_user_id = query.get("clientUserId")
        with self.lock:
            loc = self.location(token)
            since = query_version(query, loc)
            active_again = (
                {r["clientUserId"] for r in loc["users"] if r["status"] in ACTIVE}
                if active_only and self.options.retired_in_active_only
                else set()
            )
            records = [
                r
                for r in loc["users"]
                if (not active_only or r["status"] in ACTIVE or r["clientUserId"] in active_again)
                and (not retired_only or r["status"] not in ACTIVE)  # Retired and (legacy) Deleted
                and (client_user_id is None or r["clientUserId"] == client_user_id)
                and (since is None or r["versionId"] > since)
            ]
            page = self._page(records, query, "users", response_user)
            page["versionId"] = str(loc["versionId"])
            return self.envelope(token, page)

    def _page(self, records: list, query: dict[str, str], key: str, shape) -> dict[str, Any]:
        size = self.options.page_size
        total_pages = max(1, math.ceil(len(records) / size))  # an empty result is one empty page
        raw = query.get("pageIndex", "0")
        try:
            index = int(raw)
        except ValueError:
            raise ApiError(9650) from None
        if not 0 <= index < total_pages:
            raise ApiError(9650)
        items = [shape(r) for r in records[index * size : (index + 1) * size]]
        if self.options.bare_list_bodies and total_pages == 1:
            return {key: items}  # bodies recorded from Apple without any paging field
        page: dict[str, Any] = {key: items, "currentPageIndex": index, "size": len(items), "totalPages": total_pages}
        if index + 1 < total_pages:
            page["nextPageIndex"] = index + 1
        return page

    # --- users: writes (async) ----------------------------------------------------------
    def manage_users(self, token: SToken, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        users = validate_users(body, self.options.limits, check_email=kind != "RETIRE")
        refused = {e.lower() for e in self.options.refuse_emails}
        named = [u["clientUserId"] for u in users if kind != "RETIRE" and (u.get("email") or "").lower() in refused]
        if named:
            raise ApiError(9717, clientUserIds=named)
        with self.lock:
            loc = self.location(token)
            event = self._queue_event(loc, kind, {"users": users}, num_requested=len(users))
            if kind == "CREATE":
                self.counters.create_calls += 1
            return self.envelope(token, {"eventId": event["eventId"]})

    def _queue_event(self, loc: dict[str, Any], kind: str, request: dict[str, Any], *, num_requested: int):
        now = time.time()
        event = {
            "eventId": str(uuid.uuid4()),
            "eventType": kind,
            "eventStatus": "PENDING",
            "numRequested": num_requested,
            "numCompleted": 0,
            "failures": [],
            "createdAt": now,
            "dueAt": now + self.options.pending_seconds,
            "request": request,
        }
        if self.options.stall_events > 0:
            self.options = self.options.updated({"stall_events": self.options.stall_events - 1})
            event["stalled"] = "applied" if self.options.stall_applies else "idle"
        loc["events"][event["eventId"]] = event
        heapq.heappush(self._pending, (event["dueAt"], loc["token"], event["eventId"]))
        self.store.mark_dirty()
        return event

    def advance(self, *, force: bool = False) -> int:
        """Finish the events whose PENDING time is over (all of them with FORCE)."""
        now = time.time()
        done = 0
        with self.lock:
            while self._pending and (force or self._pending[0][0] <= now):
                _, name, event_id = heapq.heappop(self._pending)
                loc = self.store.locations.get(name)
                event = loc["events"].get(event_id) if loc else None
                if event and event["eventStatus"] == "PENDING":
                    self._run_event(loc, event)
                    done += 1
        return done

    def _run_event(self, loc: dict[str, Any], event: dict[str, Any]) -> None:
        kind = event["eventType"]
        if event.get("stalled") == "idle":
            return  # stays PENDING for ever and does nothing
        if event.get("stalled") == "applied":
            # The work is done, but the event stays PENDING for ever (and nobody is notified).
            if kind in ("CREATE", "UPDATE", "RETIRE"):
                self._run_user_event(loc, kind, event["request"]["users"])
            else:
                self._run_asset_event(loc, kind, event["request"])
            event["stalled"] = "done"
            self.store.mark_dirty()
            return
        if event.get("stalled") == "done":
            return
        if kind in ("CREATE", "UPDATE", "RETIRE"):
            successes, failures = self._run_user_event(loc, kind, event["request"]["users"])
            self._notify_users(loc, event, successes, failures)
        else:
            successes, failures = self._run_asset_event(loc, kind, event["request"])
            self._notify_assets(loc, event, successes, failures)
        event["numCompleted"] = event["numRequested"] - sum(len(ids) for ids in failures.values())
        serials = set(event["request"].get("serialNumbers", []))
        event["failures"] = [failure_body(number, ids, serials) for number, ids in failures.items()]
        event["eventStatus"] = "FAILED" if failures else "COMPLETE"
        event["finishedAt"] = time.time()
        self.store.mark_dirty()

    def _random_failure(self) -> bool:
        share = self.options.async_failure_share
        return bool(share) and self.random.random() < share

    def _run_user_event(self, loc, kind, users) -> tuple[list[dict], dict[int, list[str]]]:
        successes: list[dict] = []
        failures: dict[int, list[str]] = {}
        self._event_holders = self._holders(loc)
        try:
            for user in users:
                cuid = user["clientUserId"]
                number = 9603 if self._random_failure() else None
                if number is None:
                    record, number = getattr(self, f"_{kind.lower()}_user")(loc, user)
                if number is not None:
                    failures.setdefault(number, []).append(cuid)
                else:
                    successes.append(record)
                    if record["status"] == "Associated" and record["idHash"]:
                        self._event_holders.setdefault(record["idHash"], set()).add(cuid)
        finally:
            self._event_holders = None
        return successes, failures

    def _active(self, loc, cuid: str) -> dict[str, Any] | None:
        for record in reversed(loc["users"]):
            if record["clientUserId"] == cuid and record["status"] in ACTIVE:
                return record
        return None

    def _account_taken(self, loc, account_hash: str, cuid: str) -> bool:
        holders = self._event_holders
        if holders is None:  # outside an event (an invitation accepted): one scan
            return any(
                r["idHash"] == account_hash and r["status"] == "Associated" and r["clientUserId"] != cuid
                for r in loc["users"]
            )
        return bool(holders.get(account_hash, set()) - {cuid})

    def _holders(self, loc) -> dict[str, set[str]]:
        """{idHash: clientUserIds of Associated records}: one scan per user event, not one per user."""
        holders: dict[str, set[str]] = {}
        for r in loc["users"]:
            if r["status"] == "Associated" and r["idHash"]:
                holders.setdefault(r["idHash"], set()).add(r["clientUserId"])
        return holders

    def _link_refusal(self, loc, account: str, cuid: str) -> int | None:
        """Why Apple would not link Managed Apple Account ``account`` to ``cuid`` (None: it links).

        9635: the account is not of the token's organisation (its domain is not one of the
        organisation's, option ``org_domains``); 9641: another active user holds it
        (docs/apple-vpp.md#managed-apple-accounts).
        """
        domain = account.rpartition("@")[2].lower()
        if domain not in self.options.org_domains.get(loc["orgName"], []):
            return 9635
        if self._account_taken(loc, id_hash(account), cuid):
            return 9641
        return None

    def _create_user(self, loc, user) -> tuple[dict | None, int | None]:
        cuid = user["clientUserId"]
        if self._active(loc, cuid):
            return None, 9716  # Apple reports this asynchronously (docs/apple-vpp.md#errors)
        record = {
            "recordId": loc["nextRecord"],
            "clientUserId": cuid,
            "email": user.get("email"),
            "status": "Registered",
            "inviteCode": secrets.token_hex(16),
            "idHash": None,
            "managedAppleId": None,
            "createdAt": time.time(),
        }
        if user.get("managedAppleId"):
            number = self._link_refusal(loc, user["managedAppleId"], cuid)
            if number:
                return None, number  # no record is left behind (UNCONFIRMED at Apple)
            # A Managed Apple Account associates at once, no invitation (docs/apple-vpp.md#users).
            record.update(
                status="Associated", idHash=id_hash(user["managedAppleId"]), managedAppleId=user["managedAppleId"]
            )
            record["inviteCode"] = None
        # A retired clientUserId gets a NEW record; the retired history rows stay (docs/apple-vpp.md#users).
        loc["nextRecord"] += 1
        record["versionId"] = self.store.bump(loc)
        loc["users"].append(record)
        self.counters.users_created += 1
        self._supersede(loc, record)
        return record, None

    def _supersede(self, loc, record) -> None:
        """Apple's Deleted state: a retired row whose Apple Account is now on a newer row of the
        same clientUserId never changes again (docs/apple-vpp.md#user-statuses)."""
        if record["status"] != "Associated":
            return
        for old in loc["users"]:
            if (
                old is not record
                and old["clientUserId"] == record["clientUserId"]
                and old["status"] == "Retired"
                and old.get("idHash") == record["idHash"]
            ):
                old["status"] = "Deleted"
                old["versionId"] = self.store.bump(loc)

    def _update_user(self, loc, user) -> tuple[dict | None, int | None]:
        record = self._active(loc, user["clientUserId"])
        if record is None:
            return None, 9609  # UNCONFIRMED in Apple's docs: unknown user fails the item with 9609
        if "email" in user:
            record["email"] = user["email"]
        if user.get("managedAppleId"):
            number = self._link_refusal(loc, user["managedAppleId"], record["clientUserId"])
            if number:
                return None, number  # the user stays as it was (Registered, its invitation still valid)
            record.update(
                status="Associated", idHash=id_hash(user["managedAppleId"]), managedAppleId=user["managedAppleId"]
            )
        record["versionId"] = self.store.bump(loc)
        self._supersede(loc, record)
        return record, None

    def _retire_user(self, loc, user) -> tuple[dict | None, int | None]:
        record = self._active(loc, user["clientUserId"])
        if record is None:
            return None, 9609  # unknown or already retired (UNCONFIRMED; v1 had 9618)
        # Retiring keeps inviteCode/idHash on the row and does NOT revoke licences: v2 docs don't
        # say it does (docs/apple-vpp.md#licences), so clients must call assets/revoke themselves.
        record["status"] = "Retired"
        record["versionId"] = self.store.bump(loc)
        return record, None

    def _notify_users(self, loc, event, successes, failures) -> None:
        base = {"eventId": event["eventId"], "type": event["eventType"]}
        for chunk in chunks(successes):
            self._notify(
                loc, "USER_MANAGEMENT", {**base, "result": "SUCCESS", "users": [response_user(r) for r in chunk]}
            )
        for number, ids in failures.items():
            for chunk in chunks(ids):
                error = error_body(number, clientUserIds=chunk)
                users = [{"clientUserId": cuid} for cuid in chunk]
                self._notify(loc, "USER_MANAGEMENT", {**base, "result": "FAILURE", "users": users, "error": error})

    # --- invitations ---------------------------------------------------------------------
    def find_invitation(self, invite_code: str) -> tuple[dict | None, dict | None]:
        with self.lock:
            for loc in self.store.locations.values():
                for record in loc["users"]:
                    if invite_code and record.get("inviteCode") == invite_code:
                        return loc, record
        return None, None

    def accept_invitation(self, invite_code: str, apple_account: str = "") -> tuple[str, dict | None]:
        """Returns (outcome, record): accepted | already | retired | unknown | taken."""
        with self.lock:
            loc, record = self.find_invitation(invite_code)
            if record is None:
                return "unknown", None
            if record["status"] == "Associated":
                return "already", record
            if record["status"] != "Registered":
                return "retired", record
            account = apple_account.strip() or f"sandbox-{secrets.token_hex(8)}@icloud.example"
            account_hash = id_hash(account)
            if self._account_taken(loc, account_hash, record["clientUserId"]):
                return "taken", record
            record.update(status="Associated", idHash=account_hash)
            record["versionId"] = self.store.bump(loc)
            self._supersede(loc, record)
            self._notify(loc, "USER_ASSOCIATED", {"associatedUsers": [response_user(record)]})
            self._auto_associate(loc, record["clientUserId"])
            return "accepted", record

    def _auto_associate(self, loc, cuid: str) -> None:
        """Demo realism: a newly associated user gets the default app, so revoke has work to do."""
        adam_id = self.options.auto_associate_adam_id
        asset = self._asset(loc, adam_id) if adam_id else None
        if asset and self._available(loc, asset) > 0 and not self._assignment(loc, adam_id, cuid, None):
            self._add_assignment(loc, asset, cuid, None)

    # --- assets --------------------------------------------------------------------------
    def _asset(self, loc, adam_id: str) -> dict | None:
        return next((a for a in loc["assets"] if a["adamId"] == adam_id), None)

    def _assigned(self, loc, asset) -> int:
        return sum(1 for a in loc["assignments"] if a["adamId"] == asset["adamId"])

    def _available(self, loc, asset) -> int:
        return asset["totalCount"] - self._assigned(loc, asset)

    def _assignment(self, loc, adam_id, cuid, serial) -> dict | None:
        return next(
            (
                a
                for a in loc["assignments"]
                if a["adamId"] == adam_id and a.get("clientUserId") == cuid and a.get("serialNumber") == serial
            ),
            None,
        )

    def _add_assignment(self, loc, asset, cuid, serial) -> dict:
        assignment = {"adamId": asset["adamId"], "pricingParam": asset["pricingParam"]}
        if cuid:
            assignment["clientUserId"] = cuid
        if serial:
            assignment["serialNumber"] = serial
        assignment["versionId"] = self.store.bump(loc)
        loc["assignments"].append(assignment)
        return assignment

    def response_asset(self, loc, asset) -> dict[str, Any]:
        assigned = self._assigned(loc, asset)
        shaped = {k: v for k, v in asset.items() if k != "name"}
        shaped.update(assignedCount=assigned, availableCount=asset["totalCount"] - assigned)
        return shaped

    def get_assets(self, token: SToken, query: dict[str, str]) -> dict[str, Any]:
        with self.lock:
            loc = self.location(token)
            assets = [self.response_asset(loc, a) for a in loc["assets"]]
            for key in ("adamId", "productType", "pricingParam"):
                if key in query:
                    assets = [a for a in assets if a[key] == query[key]]
            for key in ("revocable", "deviceAssignable"):
                if key in query:
                    wanted = query_bool(query, key)
                    assets = [a for a in assets if a[key] == wanted]
            page = self._page(assets, query, "assets", lambda a: a)
            page["versionId"] = str(loc["versionId"])
            return self.envelope(token, page)

    def get_assignments(self, token: SToken, query: dict[str, str]) -> dict[str, Any]:
        include_state = query_bool(query, "includeUserState")
        exclude_inactive = query_bool(query, "excludeInactiveUsers")
        with self.lock:
            loc = self.location(token)
            since = query_version(query, loc)
            statuses = {r["clientUserId"]: r for r in loc["users"]}  # the latest record wins
            rows = []
            for a in loc["assignments"]:
                if any(key in query and a.get(key) != query[key] for key in ASSIGNMENT_FILTERS):
                    continue
                if since is not None and a["versionId"] <= since:
                    continue
                user = statuses.get(a.get("clientUserId") or "")
                if exclude_inactive and a.get("clientUserId") and (user is None or user["status"] not in ACTIVE):
                    continue
                row = {k: v for k, v in a.items() if k != "versionId"}
                if include_state and user is not None:
                    row["userStatus"] = user["status"]
                    if user.get("idHash"):
                        row["idHash"] = user["idHash"]
                rows.append(row)
            page = self._page(rows, query, "assignments", lambda a: a)
            page["versionId"] = str(loc["versionId"])
            return self.envelope(token, page)

    def manage_assets(self, token: SToken, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        limits = self.options.limits
        with self.lock:
            loc = self.location(token)
            if kind == "REVOKE":
                cuids, serials = validate_targets(body, limits, "maxRevokeClientUserIds", "maxRevokeSerialNumbers")
                request, count = {"clientUserIds": cuids, "serialNumbers": serials}, len(cuids) + len(serials)
            else:
                assets = validate_assets(body, limits, loc)
                cuids, serials = validate_targets(body, limits, "maxClientUserIds", "maxSerialNumbers")
                for asset in assets:
                    if serials and not asset["deviceAssignable"]:
                        raise ApiError(9707, assets=[{"adamId": asset["adamId"]}])
                    if kind == "DISASSOCIATE" and not asset["revocable"]:
                        raise ApiError(9706, assets=[{"adamId": asset["adamId"]}])
                request = {"assets": [a["adamId"] for a in assets], "clientUserIds": cuids, "serialNumbers": serials}
                # Tasks = assets x targets (docs/apple-vpp.md#events; inferred from Apple's example).
                count = len(assets) * (len(cuids) + len(serials))
            event = self._queue_event(loc, kind, request, num_requested=count)
            return self.envelope(token, {"eventId": event["eventId"]})

    def _run_asset_event(self, loc, kind, request) -> tuple[list[dict], dict[int, list[str]]]:
        successes: list[dict] = []
        failures: dict[int, list[str]] = {}
        targets = [(c, None) for c in request["clientUserIds"]] + [(None, s) for s in request["serialNumbers"]]
        if kind == "REVOKE":
            for cuid, serial in targets:
                known = serial or any(r["clientUserId"] == cuid for r in loc["users"])
                if self._random_failure() or not known:
                    failures.setdefault(9603 if known else 9609, []).append(cuid or serial)
                    continue
                for a in list(loc["assignments"]):
                    asset = self._asset(loc, a["adamId"])
                    if a.get("clientUserId") == cuid and a.get("serialNumber") == serial and asset["revocable"]:
                        loc["assignments"].remove(a)
                        self.store.bump(loc)
                        successes.append(a)
            return successes, failures
        for adam_id in request["assets"]:
            asset = self._asset(loc, adam_id)
            for cuid, serial in targets:
                number = self._asset_task(loc, kind, asset, cuid, serial, successes)
                if number is not None:
                    failures.setdefault(number, []).append(cuid or serial)
        return successes, failures

    def _asset_task(self, loc, kind, asset, cuid, serial, successes) -> int | None:
        if self._random_failure():
            return 9603
        if cuid and self._active(loc, cuid) is None and kind == "ASSOCIATE":
            return 9609
        existing = self._assignment(loc, asset["adamId"], cuid, serial)
        if kind == "ASSOCIATE":
            if existing is None:
                if self._available(loc, asset) <= 0:
                    return 9709
                existing = self._add_assignment(loc, asset, cuid, serial)
            successes.append(existing)
        elif existing is not None:
            loc["assignments"].remove(existing)
            self.store.bump(loc)
            successes.append(existing)
        return None

    def _notify_assets(self, loc, event, successes, failures) -> None:
        base = {"eventId": event["eventId"], "type": event["eventType"]}
        shaped = [{k: v for k, v in a.items() if k != "versionId"} for a in successes]
        for chunk in chunks(shaped):
            self._notify(loc, "ASSET_MANAGEMENT", {**base, "result": "SUCCESS", "assignments": chunk})
        serials = set(event["request"].get("serialNumbers", []))
        for number, ids in failures.items():
            for chunk in chunks(ids):
                error = failure_body(number, chunk, serials)
                self._notify(loc, "ASSET_MANAGEMENT", {**base, "result": "FAILURE", "assignments": [], "error": error})

    def change_asset_count(self, *, location: str, adam_id: str, delta: int) -> dict[str, Any]:
        """A purchase (+) or refund/transfer (-) made in Apple Business: ASSET_COUNT notification."""
        with self.lock:
            loc = self.store.locations.get(location)
            asset = self._asset(loc, adam_id) if loc else None
            if asset is None:
                raise ValueError(f"no asset {adam_id!r} at location {location!r}")
            if asset["totalCount"] + delta < self._assigned(loc, asset):
                raise ValueError("cannot remove licences that are assigned")
            asset["totalCount"] += delta
            self.store.bump(loc)
            notification = {"adamId": adam_id, "pricingParam": asset["pricingParam"], "countDelta": delta}
            self._notify(loc, "ASSET_COUNT", notification)
            return self.response_asset(loc, asset)

    # --- status --------------------------------------------------------------------------
    def event_status(self, token: SToken, query: dict[str, str]) -> dict[str, Any]:
        with self.lock:
            event = self.location(token)["events"].get(query.get("eventId", ""))
            if event is None:
                raise ApiError(9708)
            body = {k: event[k] for k in ("eventStatus", "eventType", "numRequested", "numCompleted")}
            if event["failures"]:
                body["failures"] = event["failures"]
            return self.envelope(token, body)

    # --- inspection ------------------------------------------------------------------------
    def inspect(self, what: str, location: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            rows: list[dict[str, Any]] = []
            for name, loc in self.store.locations.items():
                if location and name != location:
                    continue
                if what == "users":
                    rows += [{**r, "location": name} for r in loc["users"]]
                elif what == "assignments":
                    rows += [{**a, "location": name} for a in loc["assignments"]]
                elif what == "assets":
                    rows += [
                        {**self.response_asset(loc, a), "name": a["name"], "location": name} for a in loc["assets"]
                    ]
                elif what == "events":
                    rows += [{**e, "location": name} for e in loc["events"].values()]
                elif what == "locations":
                    rows.append({k: loc[k] for k in ("token", "orgName", "uId", "versionId", "clientConfig")})
            return rows


def failure_body(number: int, ids: list[str], serials: set[str]) -> dict[str, Any]:
    """An async failure naming its users and devices once each (an id may fail for several assets)."""
    unique = list(dict.fromkeys(ids))
    return error_body(
        number,
        clientUserIds=[i for i in unique if i not in serials],
        serialNumbers=[i for i in unique if i in serials],
    )


# --- validation helpers ----------------------------------------------------------------------
def chunks(items: list, size: int = NOTIFICATION_CHUNK):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def retry_after_value(seconds: int, form: str, now: float | None = None) -> str:
    """A Retry-After header: delta-seconds, or the HTTP-date NOW (the server's clock) + SECONDS."""
    if form == "http-date":
        from email.utils import format_datetime

        moment = datetime.fromtimestamp((time.time() if now is None else now) + seconds, UTC)
        return format_datetime(moment, usegmt=True)
    return str(seconds)


def query_bool(query: dict[str, str], key: str) -> bool:
    value = query.get(key)
    if value is None:
        return False
    lowered = value.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0", ""):
        return False
    raise ApiError(9602, f"{key} must be true or false.")


def query_version(query: dict[str, str], loc: dict[str, Any]) -> int | None:
    raw = query.get("sinceVersionId")
    if raw is None:
        return None
    try:
        version = int(raw)
    except ValueError:
        raise ApiError(9721) from None
    if not 0 < version <= loc["versionId"]:
        raise ApiError(9721)
    return version


def validate_mdm_info(info: Any, limits: dict[str, int]) -> dict[str, str]:
    fields = ("id", "name", "metadata")
    if not isinstance(info, dict) or not all(isinstance(info.get(k), str) and info.get(k) for k in fields):
        raise ApiError(9723)
    if len(info["id"]) > limits.get("maxMdmIdLength", 100):
        raise ApiError(9724)
    if len(info["name"]) > limits.get("maxMdmNameLength", 100):
        raise ApiError(9725)
    if len(info["metadata"]) > limits.get("maxMdmMetadataLength", 255):
        raise ApiError(9713)
    return {"id": info["id"], "name": info["name"], "metadata": info["metadata"]}


def validate_users(body: dict[str, Any], limits: dict[str, int], *, check_email: bool) -> list[dict[str, Any]]:
    users = body.get("users")
    if users is None or users == []:
        raise ApiError(9720)
    if not isinstance(users, list) or not all(isinstance(u, dict) for u in users):
        raise ApiError(9602, "users must be a list of RequestUser objects.")
    for user in users:
        cuid = user.get("clientUserId")
        if not isinstance(cuid, str) or not cuid.strip():
            raise ApiError(9602, "Each user needs a clientUserId.")
        for key in ("email", "managedAppleId"):
            if key in user and user[key] is not None and not isinstance(user[key], str):
                raise ApiError(9602, f"{key} must be a string.")
    ids = [u["clientUserId"] for u in users]
    unique = list(dict.fromkeys(ids))
    if len(unique) > limits.get("maxUsers", 100):
        raise ApiError(9714)
    if len(unique) != len(ids):
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        raise ApiError(9715, clientUserIds=duplicates)
    if check_email:
        bad = [u["clientUserId"] for u in users if u.get("email") is not None and not EMAIL_RE.match(u["email"])]
        if bad:
            raise ApiError(9717, clientUserIds=bad)
    return [{k: u[k] for k in ("clientUserId", "email", "managedAppleId") if u.get(k) is not None} for u in users]


def _string_list(body: dict[str, Any], key: str) -> list[str]:
    value = body.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ApiError(9602, f"{key} must be a list of strings.")
    return value


def validate_targets(body, limits, max_users_key: str, max_serials_key: str) -> tuple[list[str], list[str]]:
    cuids, serials = _string_list(body, "clientUserIds"), _string_list(body, "serialNumbers")
    if not cuids and not serials:
        raise ApiError(9719)
    if len(cuids) > limits.get(max_users_key, 100):
        raise ApiError(9701)
    if len(serials) > limits.get(max_serials_key, 100):
        raise ApiError(9702)
    if len(set(cuids)) != len(cuids):
        raise ApiError(9704)
    if len(set(serials)) != len(serials):
        raise ApiError(9705)
    return cuids, serials


def validate_assets(body, limits, loc) -> list[dict[str, Any]]:
    assets = body.get("assets")
    if not assets:
        raise ApiError(9718)
    if not isinstance(assets, list) or not all(
        isinstance(a, dict) and isinstance(a.get("adamId"), str) for a in assets
    ):
        raise ApiError(9602, "assets must be a list of {adamId, pricingParam} objects.")
    if len(assets) > limits.get("maxAssets", 25):
        raise ApiError(9700)
    ids = [a["adamId"] for a in assets]
    if len(set(ids)) != len(ids):
        raise ApiError(9703)
    known = {a["adamId"]: a for a in loc["assets"]}
    unknown = [{"adamId": i} for i in ids if i not in known]
    if unknown:
        raise ApiError(9602, "The asset is not in this location's library.", assets=unknown)
    return [known[i] for i in ids]
