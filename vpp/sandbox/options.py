"""Start-up options and run-time faults of the sandbox.

One flat dataclass: every field can be given at start-up (command options / fixture factory)
and changed at run time through ``POST /_sandbox/faults``; ``reset`` returns to the start-up
values.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

# Apple's Service Config example values (docs/apple-vpp.md#service-config), plus maxRequestPerSecond.
DEFAULT_LIMITS: dict[str, int] = {
    "maxAssets": 25,
    "maxUsers": 100,
    "maxNotificationLength": 512,
    "maxRevokeClientUserIds": 100,
    "maxClientUserIds": 1000,
    "maxSerialNumbers": 1000,
    "maxRevokeSerialNumbers": 100,
    "maxRequestPerSecond": 15,
    "maxSubscriptions": 25,
    "maxSubscriptionClientUserIds": 1000,
    "maxMdmNameLength": 100,
    "maxMdmMetadataLength": 255,
    "maxMdmIdLength": 100,
}


# Managed Apple Accounts: the domains each organisation (the token's orgName) owns in Apple
# Business. An account outside its token's organisation is refused with 9635 (docs/apple-vpp.md#managed-apple-accounts).
DEFAULT_ORG_DOMAINS: dict[str, list[str]] = {"Sandbox Organisation": ["corp.example", "corp.appleid.com"]}


@dataclass
class Options:
    # --- behaviour -------------------------------------------------------------------
    limits: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_LIMITS))
    page_size: int = 500  # Apple: "on the order of several hundred"
    pending_seconds: float = 2.0  # how long async events stay PENDING
    invite_base_url: str = ""  # public base of the invitation page; default: the request's Host
    auto_associate_adam_id: str = "361309726"  # app assigned on accepting an invitation ("" = none)
    org_domains: dict[str, list[str]] = field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_ORG_DOMAINS.items()}
    )
    allow_http_notifications: bool = False  # http:// is always allowed for loopback hosts
    notification_attempts: int = 3
    notification_retry_seconds: float = 1.0  # Apple: 3 attempts over 1-5 minutes
    # --- faults ----------------------------------------------------------------------
    latency: float = 0.0  # seconds added to every API request
    rps_limit: int = 0  # >0: requests per second per location answered 429/9646 beyond it
    rate_limit_retry_after: int | None = None  # Retry-After on 429 (None: no header)
    fail_next: int = 0  # the next N API requests get `fail_status`
    fail_share: float = 0.0  # plus this share of API requests at random
    fail_status: int = 503  # 500 (9603) or 503 (9729)
    retry_after: int | None = 1  # Retry-After seconds on injected 5xx (None: no header)
    retry_after_form: str = "seconds"  # "seconds" or "http-date"
    async_failure_share: float = 0.0  # share of items in async events failing with 9603
    drop_notifications: bool = False
    errors_with_http_200: bool = False  # Fleet saw Apple answer errors with HTTP 200
    revoked_tokens: list[str] = field(default_factory=list)  # full sTokens answered 9625
    expired_tokens: list[str] = field(default_factory=list)  # full sTokens answered 9621
    invalid_tokens: list[str] = field(default_factory=list)  # full sTokens answered 9622 (invalid token)
    # Addresses Apple refuses with 9717 naming their users, beyond the address rule (e.g. a
    # domain Apple will not mail); compared without regard to case.
    refuse_emails: list[str] = field(default_factory=list)
    # Errors answered instead of the next matching requests, one each, in order: {"number": 9610,
    # "path": "/assets/revoke" (optional, a prefix under /mdm/v2), "status": 200 (optional; default
    # Apple's), "body": "full" | "bare" (errorNumber only) | "empty_info" (errorInfo: {}),
    # "clientUserIds": [...] (optional errorInfo), "after": N (let N matching requests through first)}.
    inject_errors: list[dict] = field(default_factory=list)
    stall_events: int = 0  # the next N events stay PENDING for ever (Apple's docs: retry after 10 minutes)
    stall_applies: bool = True  # ... while their work is done anyway (False: nothing happens)
    clock_offset: float = 0.0  # seconds the sandbox's clock (Date, HTTP-date Retry-After) is ahead of ours
    bare_list_bodies: bool = False  # list bodies without paging fields (currentPageIndex, totalPages, ...)
    # Apple's activeOnly listing has been seen to carry a Retired record (an older record of a
    # clientUserId that is active again); the sandbox does the same unless told not to.
    retired_in_active_only: bool = True
    # Apple lags after a renewal: per location (the token's inner ``token``), the
    # tokenExpirationDate answers carry instead of the sent token's expDate (ISO-8601).
    reported_expiry: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def updated(self, changes: dict[str, Any]) -> Options:
        """A copy with CHANGES applied; unknown keys and wrong types raise ValueError."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        data = self.to_json()
        for key, value in changes.items():
            if key not in fields:
                raise ValueError(f"unknown option {key!r}")
            data[key] = _coerce(key, value, data[key])
        if "limits" in changes:  # a partial limits map merges into the current one
            data["limits"] = {**self.limits, **data["limits"]}
        if data["retry_after_form"] not in ("seconds", "http-date"):
            raise ValueError("retry_after_form must be 'seconds' or 'http-date'")
        if data["fail_status"] < 500 or data["fail_status"] > 599:
            raise ValueError("fail_status must be a 5xx status")
        if data["page_size"] < 1:
            raise ValueError("page_size must be at least 1")
        return Options(**data)


def _coerce(key: str, value: Any, current: Any) -> Any:
    if key == "limits":
        if not isinstance(value, dict) or not all(isinstance(v, int) for v in value.values()):
            raise ValueError("limits must be a map of integers")
        return value
    if key == "inject_errors":
        if not isinstance(value, list) or not all(
            isinstance(v, dict) and isinstance(v.get("number"), int) for v in value
        ):
            raise ValueError("inject_errors must be a list of {number, path?, status?, body?, clientUserIds?}")
        return value
    if key == "reported_expiry":
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ValueError("reported_expiry must be a map of location to ISO-8601 date")
        return value
    if key == "org_domains":
        if not isinstance(value, dict) or not all(
            isinstance(v, list) and all(isinstance(d, str) for d in v) for v in value.values()
        ):
            raise ValueError("org_domains must be a map of organisation name to a list of domains")
        return {org: [d.lower() for d in domains] for org, domains in value.items()}
    if key in ("revoked_tokens", "expired_tokens", "invalid_tokens", "refuse_emails"):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{key} must be a list of tokens")
        return value
    if key in ("retry_after", "rate_limit_retry_after") and value is None:
        return None
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{key} must be true or false")
        return value
    if isinstance(current, int | float) or current is None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{key} must be a number")
        return type(current)(value) if current is not None else int(value)
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string")
    return value
