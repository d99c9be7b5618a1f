"""Typed answers of Apple's VPP service (App and Book Management v2), parsed tolerantly.

Response shapes: https://developer.apple.com/documentation/devicemanagement/app-book-and-subscription-management
(the project's notes: docs/apple-vpp.md).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from vpp.apple.errors import ERROR_MESSAGES, InvalidRequestError, VppError

logger = logging.getLogger(__name__)

# Apple's documented example values (docs/apple-vpp.md#service-config), used ONLY when Service Config omits a key.
# The real values always come from GET /service/config.
FALLBACK_LIMITS = {"maxUsers": 100, "maxRevokeClientUserIds": 100, "maxRequestPerSecond": 15}


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
        parsed = parsed.replace(tzinfo=UTC)  # Apple: "dates are shown in UTC" (docs/apple-vpp.md#response-envelope)
    return parsed.astimezone(UTC)


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
    """The envelope fields most v2 responses carry (docs/apple-vpp.md#response-envelope)."""

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
        """Apple's invitation link for a user's inviteCode, from the urls.invitationEmail template.

        docs/apple-vpp.md#invitations
        """
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


# Apple's users/create and users/update refuse an address without a dot in its domain with 9717
# ("The email address is invalid", naming the user in errorInfo.clientUserIds); "+" tags and
# internationalised addresses are accepted (docs/apple-vpp.md#errors). Django's EmailValidator accepts
# ``someone@localhost``, so it is not enough.
_APPLE_EMAIL = re.compile(r"^[^@\s]+@[^@\s.][^@\s]*\.[^@\s]*[^@\s.]$")


def apple_accepts_email(address: str | None) -> bool:
    """Whether Apple accepts ``address`` as a user's email (see _APPLE_EMAIL above); '' and None: no address."""
    if not address:
        return True
    return bool(_APPLE_EMAIL.match(address.strip())) and ".." not in address.split("@", 1)[-1]


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
    """True when Apple names another MDM as the manager of this location (docs/apple-vpp.md#mdminfo).

    An absent or empty mdmInfo means nobody claimed the location yet: not "other".
    """
    if mdm_info is None or not (mdm_info.id or "").strip():
        return False
    return mdm_info.id.strip().lower() != str(our_id).strip().lower()
