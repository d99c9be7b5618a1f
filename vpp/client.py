"""Client for Apple's "App, Book, and Subscription Management" service (VPP v2).

The ONLY module that speaks HTTP to Apple (or to the sandbox, or any compatible server).
It returns typed dataclasses and raises named errors split into *transient* (retry later)
and *permanent* (show the admin). The specification is
shared/reference/apple-vpp-api.md; section numbers below (§) refer to it.

Threading: a ``VppClient`` holds one ``requests.Session``; use one client per thread/task.
The rate limiter and the Service Config cache are shared process-wide (and the limiter
across processes through Redis), so creating many clients is cheap and safe.

Secrets: the sToken is only ever put in the Authorization header. It is never logged,
never put in an exception message, and the limiter keys on a hash of it.
"""

from __future__ import annotations

import base64
import binascii
import collections
import json
import logging
import random
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import partial
from importlib import metadata
from typing import TYPE_CHECKING, Any

import requests
from redis.exceptions import RedisError

from vpp import ratelimit

if TYPE_CHECKING:
    from vpp.models import VppServerSetting

logger = logging.getLogger(__name__)

APPLE_BASE_URL = "https://vpp.itunes.apple.com/mdm/v2"

SERVICE_CONFIG_TTL = 300.0  # Apple: re-read limits/URLs every 5 minutes (§2, §8.6)
MAX_TOKEN_FILE_BYTES = 16 * 1024  # real tokens are a few hundred bytes; anything huge is the wrong file

# Apple's documented example values (§2.2), used ONLY when Service Config omits a key.
# The real values always come from GET /service/config.
FALLBACK_LIMITS = {"maxUsers": 100, "maxRevokeClientUserIds": 100, "maxRequestPerSecond": 15}


def _user_agent() -> str:
    try:
        version = metadata.version("kmconsole")
    except metadata.PackageNotFoundError:
        version = "0"
    return f"kmconsole/{version}"


USER_AGENT = _user_agent()


# ---------------------------------------------------------------------------------------
# Dates
# ---------------------------------------------------------------------------------------


def parse_apple_datetime(value: Any) -> datetime | None:
    """Apple's ISO-8601 dates in any of the forms seen: ``+0000``, ``+00:00``, ``Z``, none (UTC).

    Returns an aware UTC datetime, or None if the value is missing or unreadable (response
    fields are parsed tolerantly; token files are validated strictly by the caller).
    """
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text)  # 3.11 reads Z, +00:00, +0000 and fractions
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)  # Apple: "dates are shown in UTC" (§2.1)
    return parsed.astimezone(UTC)


# ---------------------------------------------------------------------------------------
# Content token (.vpptoken)
# ---------------------------------------------------------------------------------------


class TokenFileError(ValueError):
    """The uploaded content token cannot be used; ``reason`` is a sentence for the admin."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ContentToken:
    raw: str = field(repr=False)  # the Base64 sToken sent as "Bearer <raw>"; never log it
    token: str = field(repr=False)
    org_name: str
    expires_at: datetime  # aware UTC

    @property
    def expired(self) -> bool:
        return self.expires_at <= datetime.now(UTC)


_DOWNLOAD_HINT = (
    "Download a new content token in Apple Business Manager or Apple School Manager"
    " (Preferences › Payments and Billing) and upload it here."
)


def parse_content_token(data: str | bytes, *, now: datetime | None = None, allow_expired: bool = False) -> ContentToken:
    """Validate a .vpptoken file: one Base64 string of JSON {token, expDate, orgName} (§1).

    Every failure raises TokenFileError with a specific reason. The reason never contains
    the token or the file's content (it is a secret, and reasons end up in logs and pages).
    """
    text = _token_text(data)
    payload = _token_payload(text)
    values = {}
    for name in ("token", "expDate", "orgName"):
        value = payload.get(name)
        if value is None:
            raise TokenFileError(
                f"The content token has no “{name}” field, so it is not a complete VPP content token. {_DOWNLOAD_HINT}"
            )
        if not isinstance(value, str) or not value.strip():
            raise TokenFileError(f"The content token's “{name}” field is empty or not text. {_DOWNLOAD_HINT}")
        values[name] = value.strip()
    expires_at = _token_expiry(values["expDate"])
    org_name = values["orgName"]
    if not allow_expired and expires_at <= (now or datetime.now(UTC)):
        raise TokenFileError(
            f"The content token for “{org_name}” expired on {expires_at:%Y-%m-%d %H:%M} UTC. {_DOWNLOAD_HINT}"
        )
    return ContentToken(raw=text, token=values["token"], org_name=org_name, expires_at=expires_at)


def _token_text(data: str | bytes) -> str:
    if isinstance(data, bytes):
        if len(data) > MAX_TOKEN_FILE_BYTES:
            raise TokenFileError(
                f"The file is too large to be a content token ({len(data)} bytes; a token is under 1 KB). "
                f"{_DOWNLOAD_HINT}"
            )
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise TokenFileError(
                f"The file is binary, not a content token (a .vpptoken file is plain text). {_DOWNLOAD_HINT}"
            ) from None
    elif not isinstance(data, str):
        raise TokenFileError("The content token must be text.")
    if len(data) > MAX_TOKEN_FILE_BYTES:
        raise TokenFileError(f"The file is too large to be a content token. {_DOWNLOAD_HINT}")
    # Strip a byte-order mark and all whitespace (editors add newlines; some wrap Base64).
    text = "".join(data.lstrip("\ufeff").split())
    if not text:
        raise TokenFileError(f"The content token file is empty. {_DOWNLOAD_HINT}")
    return text


def _token_payload(text: str) -> dict:
    try:
        decoded = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise TokenFileError(
            f"The file is not a content token: its content is not Base64 text, or it was cut short. {_DOWNLOAD_HINT}"
        ) from None
    try:
        payload = json.loads(decoded.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise TokenFileError(
            f"The content token is damaged or incomplete: it does not decode to Apple's token data. {_DOWNLOAD_HINT}"
        ) from None
    if not isinstance(payload, dict):
        raise TokenFileError(f"The content token does not contain Apple's token data (wrong format). {_DOWNLOAD_HINT}")
    return payload


def _token_expiry(exp_date: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(exp_date)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        # A date without an offset is ambiguous by hours; a token file always carries one (§1).
        raise TokenFileError(f"The content token's expiry date ({exp_date[:40]!r}) cannot be read. {_DOWNLOAD_HINT}")
    return parsed.astimezone(UTC)


# ---------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------

# Sentences for admins, per Apple error number (§4). Apple's own errorMessage is kept on the
# exception as ``apple_message`` for support; these explain what to do.
ERROR_MESSAGES: dict[int, str] = {
    9600: "A required value was missing from the request to Apple.",
    9601: "Apple did not accept the content token (login required). Upload the content token again.",
    9602: "Apple rejected a value in the request as invalid.",
    9603: "Apple's service had an internal error. The action will be retried later.",
    9609: "Apple could not find this user in the VPP location.",
    9610: "Apple could not find the licence.",
    9616: "The licence is already assigned.",
    9618: "The user is already retired in VPP.",
    9620: "The user was already deleted from VPP.",
    9621: "The content token has expired. Download a new token from Apple Business/School Manager and upload it.",
    9622: "Apple did not accept the content token. Upload the content token again.",
    9623: "Apple rejected the push notification token.",
    9625: (
        "The content token was revoked in Apple Business/School Manager (for example after a password change)."
        " Download a new token and upload it."
    ),
    9632: "Apple refused a request repeated too often. Wait before trying again.",
    9634: "This Apple service is no longer available.",
    9635: "The Apple Account cannot be associated with this user.",
    9636: "Apple could not find this user in the VPP location.",
    9637: (
        "The content token belongs to an account that is not allowed to do this (facilitator or read-only role)."
        " Use a token of a content manager with licence permissions."
    ),
    9641: "The Apple Account is already associated with another VPP user.",
    9643: "The licence is locked by a pending transfer.",
    9644: "Apple's service is in maintenance. The action will be retried later.",
    9646: "Too many requests were sent to Apple for this organisation; kmconsole is slowing down and will retry.",
    9647: "This action is not supported for legacy content tokens. Download a current token and upload it.",
    9650: "Apple reported the requested page as out of range (the list changed while it was being read).",
    9700: "Too many apps or books in one request to Apple.",
    9701: "Too many users in one licence request to Apple.",
    9702: "Too many serial numbers in one request to Apple.",
    9703: "The same app or book appears twice in the request.",
    9704: "The same user appears twice in the request.",
    9705: "The same serial number appears twice in the request.",
    9706: "The licence of this app or book cannot be revoked.",
    9707: "This app or book cannot be assigned to devices.",
    9708: "Apple no longer knows this request (event); its result has to be checked by syncing users.",
    9709: "There are not enough licences left for this app or book.",
    9710: "Apple needs both a notification URL and its auth token.",
    9711: "The notification URL or auth token is too long for Apple.",
    9712: "Apple requires a valid HTTPS notification URL.",
    9713: "The MDM metadata sent to Apple is too long.",
    9714: "Too many users in one request to Apple.",
    9715: "The same user appears twice in one request to Apple.",
    9716: "This user already has an active VPP registration at Apple.",
    9717: "Apple rejected the user's e-mail address as invalid.",
    9718: "The request to Apple named no app or book.",
    9719: "The request to Apple named no users or serial numbers.",
    9720: "The request to Apple named no users.",
    9721: "Apple did not recognise the sync version; a full sync is needed.",
    9722: "The content token is malformed or was not sent correctly. Upload the content token again.",
    9723: "The MDM information sent to Apple is incomplete.",
    9724: "The MDM id sent to Apple is too long.",
    9725: "The MDM name sent to Apple is too long.",
    9726: "Apple does not support this kind of request (HTTP method).",
    9727: "Apple did not accept the request's content type.",
    9728: "Apple could not reach the notification URL.",
    9729: "Apple's service is temporarily unavailable. The action will be retried later.",
}

_TRANSIENT_NUMBERS = {9603, 9644, 9729}
_RATE_LIMIT_NUMBERS = {9646}
_EXPIRED_NUMBERS = {9621}
_REVOKED_NUMBERS = {9625}
_INVALID_TOKEN_NUMBERS = {9601, 9622, 9722}
_NOT_PERMITTED_NUMBERS = {9637, 9647}
_TOO_MANY_NUMBERS = {9701, 9714}  # more users in one request than Apple's current limit


class VppError(Exception):
    """Any failure talking to Apple. ``message`` is a sentence an admin understands."""

    def __init__(
        self,
        message: str,
        *,
        error_number: int | None = None,
        http_status: int | None = None,
        apple_message: str | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.error_number = error_number
        self.http_status = http_status
        self.apple_message = apple_message
        # For batched calls (create/update/retire/revoke): the event ids Apple accepted, in
        # batch order, and every batch's outcome. The caller must track the accepted ones.
        self.event_ids: list[str] = []
        self.batches: list[BatchOutcome] = []

    def __str__(self) -> str:
        if self.error_number is not None:
            return f"{self.message} (Apple error {self.error_number})"
        return self.message


class TransientVppError(VppError):
    """Worth retrying later. ``retry_after``: seconds Apple asked us to wait, if it said so.

    ``outcome_unknown`` is True when a non-idempotent request (create/update/retire/revoke)
    may have reached Apple before failing (timeout, dropped connection, 500): the caller
    must check (event status / read the users back) before sending it again.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, outcome_unknown: bool = False, **kwargs):
        super().__init__(message, **kwargs)
        self.retry_after = retry_after
        self.outcome_unknown = outcome_unknown


class RateLimitedError(TransientVppError):
    """HTTP 429 / 9646, or our own limiter is paused by an earlier Retry-After."""


class ServiceUnavailableError(TransientVppError):
    """5xx, 9603, 9644, 9729, timeouts, connection errors, unreadable answers."""


class EventTimeoutError(TransientVppError):
    """An event was still PENDING at the deadline of wait_for_event."""

    def __init__(self, message: str, *, event_id: str, last_status: EventStatus | None = None, **kwargs):
        super().__init__(message, **kwargs)
        self.event_id = event_id
        self.last_status = last_status


class PermanentVppError(VppError):
    """Retrying will not help; an admin has to act (or the request was wrong)."""


class TokenExpiredError(PermanentVppError):
    """9621."""


class TokenRevokedError(PermanentVppError):
    """9625."""


class TokenInvalidError(PermanentVppError):
    """9722, 9601, 9622, or a 401 without an error number; also: no token uploaded."""


class NotPermittedError(PermanentVppError):
    """9637 (facilitator / read-only role), 9647 (legacy token), or a 403."""


class InvalidRequestError(PermanentVppError):
    """Other 4xx / argument errors (97xx), and unexpected answers that retrying won't fix."""


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date (RFC 9110)."""
    if not value or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def error_for(
    *,
    http_status: int | None,
    error_number: int | None = None,
    apple_message: str | None = None,
    retry_after: float | None = None,
    outcome_unknown: bool = False,
) -> VppError:
    """Map an Apple error number and/or HTTP status to the named exception (§4)."""
    message = _message_for(error_number, http_status, apple_message)
    common = {"error_number": error_number, "http_status": http_status, "apple_message": apple_message}
    if error_number in _RATE_LIMIT_NUMBERS or (error_number is None and http_status == 429):
        return RateLimitedError(message, retry_after=retry_after, **common)
    if error_number in _TRANSIENT_NUMBERS:
        return ServiceUnavailableError(message, retry_after=retry_after, outcome_unknown=outcome_unknown, **common)
    if error_number in _EXPIRED_NUMBERS:
        return TokenExpiredError(message, **common)
    if error_number in _REVOKED_NUMBERS:
        return TokenRevokedError(message, **common)
    if error_number in _INVALID_TOKEN_NUMBERS:
        return TokenInvalidError(message, **common)
    if error_number in _NOT_PERMITTED_NUMBERS:
        return NotPermittedError(message, **common)
    status = http_status or 0
    if status == 429:
        return RateLimitedError(message, retry_after=retry_after, **common)
    if status >= 500:
        return ServiceUnavailableError(message, retry_after=retry_after, outcome_unknown=outcome_unknown, **common)
    if error_number is None and status == 401:
        return TokenInvalidError(message, **common)
    if error_number is None and status == 403:
        return NotPermittedError(message, **common)
    return InvalidRequestError(message, **common)


def _message_for(error_number: int | None, http_status: int | None, apple_message: str | None) -> str:
    if error_number in ERROR_MESSAGES:
        return ERROR_MESSAGES[error_number]
    if error_number is not None:
        detail = f": “{apple_message.strip()[:200]}”" if apple_message and apple_message.strip() else ""
        return f"Apple reported an error{detail}."
    status = http_status or 0
    if status == 429:
        return ERROR_MESSAGES[9646]
    if status == 401:
        return "Apple did not accept the content token. Upload the content token again."
    if status == 403:
        return "Apple refused the request for this content token (missing permission)."
    if status == 404:
        return "Apple's service answered “not found”; the VPP server address may be wrong."
    if status >= 500:
        return f"Apple's service is unavailable (HTTP {status}). The action will be retried later."
    return f"Apple rejected the request (HTTP {status})."


# ---------------------------------------------------------------------------------------
# Typed results
# ---------------------------------------------------------------------------------------


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _str(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"true", "1", "yes"}
    return bool(value)


def _str_list(value: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    return [str(item) for item in value if item is not None]


@dataclass
class MdmInfo:
    id: str
    name: str
    metadata: str = ""

    @classmethod
    def from_json(cls, data: Any) -> MdmInfo | None:
        if not isinstance(data, dict):
            return None
        return cls(
            id=_str(data.get("id")) or "", name=_str(data.get("name")) or "", metadata=_str(data.get("metadata")) or ""
        )

    def to_json(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name, "metadata": self.metadata}


@dataclass
class ResponseMeta:
    """The envelope fields most v2 responses carry (§2.1)."""

    token_expires_at: datetime | None = None
    uid: str | None = None
    mdm_info: MdmInfo | None = None

    @classmethod
    def from_json(cls, data: dict) -> ResponseMeta:
        return cls(
            token_expires_at=parse_apple_datetime(data.get("tokenExpirationDate")),
            uid=_str(data.get("uId")),
            mdm_info=MdmInfo.from_json(data.get("mdmInfo")),
        )


@dataclass
class ServiceConfig:
    limits: dict[str, int]
    urls: dict[str, str]
    error_codes: dict[int, str]
    notification_types: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: dict) -> ServiceConfig:
        limits = {}
        for key, value in (data.get("limits") or {}).items() if isinstance(data.get("limits"), dict) else []:
            number = _int(value, default=-1)
            if number > 0:  # a zero/garbage limit would stall every batch; fall back instead
                limits[str(key)] = number
        urls_raw = data.get("urls")
        urls = {str(k): str(v) for k, v in urls_raw.items() if isinstance(v, str)} if isinstance(urls_raw, dict) else {}
        codes = {}
        for item in data.get("errorCodes") or []:
            if isinstance(item, dict) and _int(item.get("errorNumber"), 0):
                codes[_int(item.get("errorNumber"))] = _str(item.get("errorMessage")) or ""
        return cls(
            limits=limits, urls=urls, error_codes=codes, notification_types=_str_list(data.get("notificationTypes"))
        )

    def limit(self, name: str) -> int:
        """A limit from Service Config; Apple's documented example value only if the key is absent."""
        return self.limits.get(name) or FALLBACK_LIMITS[name]

    @property
    def max_users(self) -> int:
        return self.limit("maxUsers")

    @property
    def max_revoke_client_user_ids(self) -> int:
        return self.limit("maxRevokeClientUserIds")

    @property
    def max_request_per_second(self) -> int:
        return self.limit("maxRequestPerSecond")

    def invitation_url(self, invite_code: str) -> str:
        """Apple's invitation link for a user's inviteCode, from the urls.invitationEmail template (§3)."""
        template = self.urls.get("invitationEmail")
        if not template:
            raise InvalidRequestError("Apple's service configuration has no invitation URL template.")
        return template.replace("%25inviteCode%25", invite_code).replace("%inviteCode%", invite_code)


@dataclass
class ClientConfig:
    location_name: str | None
    country_code: str | None
    default_platform: str | None
    website_url: str | None
    token_expires_at: datetime | None
    uid: str | None
    mdm_info: MdmInfo | None
    notification_url: str | None
    notification_auth_token: str | None = field(default=None, repr=False)
    subscribed_notification_types: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: dict) -> ClientConfig:
        return cls(
            location_name=_str(data.get("locationName")),
            country_code=_str(data.get("countryISO2ACode")),
            default_platform=_str(data.get("defaultPlatform")),
            website_url=_str(data.get("websiteURL")),
            token_expires_at=parse_apple_datetime(data.get("tokenExpirationDate")),
            uid=_str(data.get("uId")),
            mdm_info=MdmInfo.from_json(data.get("mdmInfo")),
            notification_url=_str(data.get("notificationUrl")),
            notification_auth_token=_str(data.get("notificationAuthToken")),
            subscribed_notification_types=_str_list(data.get("subscribedNotificationTypes")),
        )


class UserStatus:
    REGISTERED = "Registered"
    ASSOCIATED = "Associated"
    RETIRED = "Retired"
    DELETED = "Deleted"
    ACTIVE = frozenset({REGISTERED, ASSOCIATED})


@dataclass
class VppApiUser:
    client_user_id: str
    status: str  # "Registered" | "Associated" | "Retired" | "Deleted"
    email: str | None = None
    invite_code: str | None = None
    id_hash: str | None = None

    @classmethod
    def from_json(cls, data: dict) -> VppApiUser:
        return cls(
            client_user_id=_str(data.get("clientUserId")) or "",
            status=_normalise_status(data.get("status")),
            email=_str(data.get("email")) or None,
            invite_code=_str(data.get("inviteCode")) or None,
            id_hash=_str(data.get("idHash")) or None,
        )

    @property
    def active(self) -> bool:
        return self.status in UserStatus.ACTIVE


def _normalise_status(value: Any) -> str:
    text = (_str(value) or "").strip()
    for known in (UserStatus.REGISTERED, UserStatus.ASSOCIATED, UserStatus.RETIRED, UserStatus.DELETED):
        if text.lower() == known.lower():
            return known
    return text  # unknown future status: kept as Apple sent it


@dataclass
class RequestUser:
    client_user_id: str
    email: str | None = None
    managed_apple_id: str | None = None

    def to_json(self) -> dict[str, str]:
        body = {"clientUserId": self.client_user_id}
        if self.email:
            body["email"] = self.email
        if self.managed_apple_id:
            body["managedAppleId"] = self.managed_apple_id
        return body


@dataclass
class EventFailure:
    error_number: int | None
    message: str  # admin-readable sentence (ours for known numbers, else Apple's)
    client_user_ids: list[str] = field(default_factory=list)
    serial_numbers: list[str] = field(default_factory=list)
    apple_message: str | None = None
    adam_ids: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: Any) -> EventFailure:
        if not isinstance(data, dict):
            return cls(error_number=None, message="Apple reported a failure without details.")
        number = _int(data.get("errorNumber"), default=0) or None
        apple_message = _str(data.get("errorMessage"))
        info = data.get("errorInfo") if isinstance(data.get("errorInfo"), dict) else {}
        assets = info.get("assets") if isinstance(info.get("assets"), list) else []
        return cls(
            error_number=number,
            message=ERROR_MESSAGES.get(number) or apple_message or "Apple reported a failure.",
            client_user_ids=_str_list(info.get("clientUserIds")),
            serial_numbers=_str_list(info.get("serialNumbers")),
            apple_message=apple_message,
            adam_ids=[str(a.get("adamId")) for a in assets if isinstance(a, dict) and a.get("adamId") is not None],
        )


class EventState:
    PENDING = "PENDING"
    COMPLETE = "COMPLETE"
    FAILED = "FAILED"


@dataclass
class EventStatus:
    event_id: str
    status: str  # "PENDING" | "COMPLETE" | "FAILED"
    event_type: str
    num_requested: int
    num_completed: int
    failures: list[EventFailure] = field(default_factory=list)

    @classmethod
    def from_json(cls, event_id: str, data: dict) -> EventStatus:
        return cls(
            event_id=event_id,
            status=(_str(data.get("eventStatus")) or "").strip().upper(),
            event_type=(_str(data.get("eventType")) or "").strip().upper(),
            num_requested=_int(data.get("numRequested")),
            num_completed=_int(data.get("numCompleted")),
            failures=[EventFailure.from_json(item) for item in data.get("failures") or [] if item is not None],
        )

    @property
    def finished(self) -> bool:
        return self.status in (EventState.COMPLETE, EventState.FAILED)

    def failed_client_user_ids(self) -> set[str]:
        return {cid for failure in self.failures for cid in failure.client_user_ids}


@dataclass
class Asset:
    adam_id: str
    pricing_param: str | None
    product_type: str | None
    assigned_count: int
    available_count: int
    total_count: int
    retired_count: int
    revocable: bool
    device_assignable: bool
    supported_platforms: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: dict) -> Asset:
        return cls(
            adam_id=_str(data.get("adamId")) or "",
            pricing_param=_str(data.get("pricingParam")),
            product_type=_str(data.get("productType")),
            assigned_count=_int(data.get("assignedCount")),
            available_count=_int(data.get("availableCount")),
            total_count=_int(data.get("totalCount")),
            retired_count=_int(data.get("retiredCount")),
            revocable=_bool(data.get("revocable")),
            device_assignable=_bool(data.get("deviceAssignable")),
            supported_platforms=_str_list(data.get("supportedPlatforms")),
        )


@dataclass
class Assignment:
    adam_id: str
    pricing_param: str | None
    client_user_id: str | None
    serial_number: str | None
    user_status: str | None = None

    @classmethod
    def from_json(cls, data: dict) -> Assignment:
        return cls(
            adam_id=_str(data.get("adamId")) or "",
            pricing_param=_str(data.get("pricingParam")),
            client_user_id=_str(data.get("clientUserId")) or None,
            serial_number=_str(data.get("serialNumber")) or None,
            user_status=_normalise_status(data.get("userStatus")) if data.get("userStatus") else None,
        )


@dataclass
class UserPage:
    users: list[VppApiUser]
    current_page_index: int
    next_page_index: int | None
    total_pages: int | None
    version_id: str | None
    meta: ResponseMeta


@dataclass
class RawPage:
    """One page of a list other than users (assets, assignments): its JSON and paging fields."""

    data: dict = field(repr=False)
    current_page_index: int
    next_page_index: int | None
    total_pages: int | None

    @classmethod
    def from_json(cls, data: dict, page_index: int) -> RawPage:
        next_index, total = data.get("nextPageIndex"), data.get("totalPages")
        return cls(
            data=data,
            current_page_index=_int(data.get("currentPageIndex"), page_index),
            next_page_index=_int(next_index) if next_index is not None else None,
            total_pages=_int(total) if total is not None else None,
        )


@dataclass
class BatchOutcome:
    """One request of a batched call: its items and what became of it.

    event_id set: Apple queued it. error set: it failed (if ``error.outcome_unknown`` it may
    still have been queued). Neither: it was not sent because an earlier batch failed.
    """

    items: list = field(repr=False)
    keys: list[str]
    event_id: str | None = None
    error: VppError | None = None


def managed_by_other_mdm(mdm_info: MdmInfo | None, our_id: str) -> bool:
    """True when Apple names another MDM as the manager of this location (§8.4).

    An absent or empty mdmInfo means nobody claimed the location yet: not "other".
    """
    if mdm_info is None or not (mdm_info.id or "").strip():
        return False
    return mdm_info.id.strip().lower() != str(our_id).strip().lower()


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
    """GET /users, streamed page by page (§2.4, §2.7).

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
    """Follow nextPageIndex (§2.7). If it is absent but totalPages says more pages exist,
    still ask for the next one: the docs conflict on paging (§8.15), and stopping early would
    make a sync believe users are gone from VPP. A 9650 answer then ends the listing."""
    if page.next_page_index is not None:
        return page.next_page_index
    if page.total_pages is not None and page.current_page_index + 1 < page.total_pages:
        return page.current_page_index + 1
    return None


def _iter_pages(first, fetch, *, parallel: int) -> Iterator:
    """Yield FIRST and the pages after it, in order, following nextPageIndex (§2.7).

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
    ):
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
        # (Celery) owns the long retries and reschedules with Retry-After (ecosystem §1.3).
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.retry_budget = retry_budget
        # Batches in flight at once (Apple: at most five parallel page requests, §2.7; we use
        # the same cap for batched POSTs).
        self.parallel_requests = parallel_requests
        self.last_meta = ResponseMeta()  # envelope of the latest successful response

    def __repr__(self) -> str:
        return f"<VppClient {self.base_url}>"  # never the token

    @classmethod
    def from_setting(cls, setting: VppServerSetting, **kwargs) -> VppClient:
        from django.conf import settings

        from vpp.secrets import decrypt

        if not setting.content_token_encrypted:
            raise TokenInvalidError("No content token has been uploaded.")
        base_url = setting.api_base_url or settings.VPP_API_BASE_URL or APPLE_BASE_URL
        return cls(decrypt(setting.content_token_encrypted), base_url=base_url, **kwargs)

    # ---- configuration ----------------------------------------------------------------

    def service_config(self, *, refresh: bool = False) -> ServiceConfig:
        """GET /service/config (no Authorization header, §1), cached 5 minutes per base URL."""
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
        """POST /client/config with only the fields given (§2.3).

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

        Retired history rows share the clientUserId (§8.2), so they are skipped here.
        """
        for user in self.iter_users(client_user_id=client_user_id, active_only=True):
            if user.client_user_id == client_user_id and user.active:
                return user
        return None

    def split_users(self, users: Sequence[RequestUser]) -> list[list[RequestUser]]:
        """The request batches create/update would send: de-duplicated, at most maxUsers each."""
        return _chunks(self._unique_users(users), self.service_config().max_users)

    def create_users(self, users: Sequence[RequestUser]) -> list[str]:
        """POST /users/create in batches of ≤ maxUsers; the event ids, in batch order (§2.4)."""
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
        400 queues nothing (§4), so the limits are re-read and the items re-split, once.
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
        """GET a paged list (assets, assignments) page by page (§2.7); yields each page's JSON."""
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
        """Poll GET /status until COMPLETE or FAILED (§5); EventTimeoutError at the deadline.

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
                    f" after {timeout:.0f} s); it will be checked again later.",
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
            try:
                return self._attempt(method, path, params=params, json_body=json_body, auth=auth, idempotent=idempotent)
            except TransientVppError as exc:
                if exc.retry_after:
                    # Retry-After throttles the whole token, not this request: pause every caller.
                    self.rate_limiter.pause(self.limiter_key, exc.retry_after)
                if exc.outcome_unknown or attempt >= self.max_retries:
                    raise
                delay = self._retry_delay(exc, attempt)
                if time.monotonic() - started + delay > self.retry_budget:
                    raise
                attempt += 1
                logger.info("VPP %s %s: %s; retry %d in %.1f s", method, path, type(exc).__name__, attempt, delay)
                if not exc.retry_after:
                    time.sleep(delay)  # the limiter's pause does the waiting when Apple said how long

    def _retry_delay(self, exc: TransientVppError, attempt: int) -> float:
        if exc.retry_after:
            return exc.retry_after
        # Exponential backoff with full jitter (Apple: back off on 9646/429, §4).
        cap = min(self.backoff_max, self.backoff_base * (2**attempt))
        return random.uniform(cap / 2, cap)

    def _attempt(self, method, path, *, params, json_body, auth, idempotent) -> dict:
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
                timeout=self.timeout,
                # Never follow redirects: requests would resend the body elsewhere, and a
                # redirect from Apple's API is not a documented answer.
                allow_redirects=False,
            )
        except requests.exceptions.ConnectTimeout:
            raise ServiceUnavailableError(
                "Apple's service could not be reached in time. The action will be retried later."
            ) from None
        except requests.exceptions.Timeout:
            raise ServiceUnavailableError(
                "Apple's service did not answer in time. The action will be retried later.",
                outcome_unknown=not idempotent,
            ) from None
        except requests.exceptions.ConnectionError as exc:
            raise ServiceUnavailableError(
                "Could not connect to Apple's service. The action will be retried later.",
                outcome_unknown=not idempotent and not _never_connected(exc),
            ) from None
        except requests.exceptions.RequestException as exc:
            raise InvalidRequestError(f"The request to Apple could not be sent ({type(exc).__name__}).") from None
        logger.debug("VPP %s %s -> %s in %.3f s", method, path, response.status_code, time.monotonic() - began)
        return self._parse(response, idempotent=idempotent)

    def _acquire_slot(self, *, auth: bool) -> None:
        """Wait for the token's rate limiter (and any Retry-After pause) before a request.

        Service Config carries no token, so Apple cannot count it against the token's
        maxRequestPerSecond (and we only learn that rate from it): it takes no slot, but
        it still honours a pause.
        """
        try:
            if auth:
                rate = self.service_config().max_request_per_second
                self.rate_limiter.acquire(self.limiter_key, rate=rate, max_wait=self.retry_budget)
            else:
                self._wait_out_pause()
        except ratelimit.RateLimitPaused as exc:
            raise RateLimitedError(
                "Requests for this content token are paused (Apple asked to wait) or queued behind"
                " Apple's rate limit; the action will be retried later.",
                retry_after=exc.wait,
            ) from None
        except (RedisError, OSError) as exc:  # the shared limiter is infrastructure: retry later
            raise ServiceUnavailableError(
                f"The shared rate limiter is unavailable ({type(exc).__name__}); the action will be retried later."
            ) from None

    def _wait_out_pause(self) -> None:
        pause = self.rate_limiter.paused_for(self.limiter_key)
        if pause > self.retry_budget:
            raise ratelimit.RateLimitPaused(pause)
        if pause > 0:
            time.sleep(pause)

    def _parse(self, response: requests.Response, *, idempotent: bool) -> dict:
        status = response.status_code
        data = _json_body(response)
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        # Any body with errorNumber is an error, whatever the HTTP status (§4, §8.9).
        if isinstance(data, dict) and data.get("errorNumber") not in (None, "", 0):
            number = _int(data.get("errorNumber"), default=0) or None
            raise error_for(
                http_status=status,
                error_number=number,
                apple_message=_str(data.get("errorMessage")),
                retry_after=retry_after,
                outcome_unknown=not idempotent and _may_have_acted(status, number),
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
        return data


def _json_body(response: requests.Response) -> Any:
    if not response.content or not response.content.strip():
        return None
    try:
        return json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return None  # HTML error page, truncated body...


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
    (synchronous errors trigger no async processing, §4). A 500/9603 or other 5xx is unknown.
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
