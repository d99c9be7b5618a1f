"""Request and response shapes of /api/v1/ (the OpenAPI schema is generated from these)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from ninja import Field, Schema
from pydantic import AfterValidator, StringConstraints

MAX_ID = 2**63 - 1  # the database's largest primary key (users.forms.MAX_PK)


def _printable(value: str) -> str:
    """No NUL or other control characters (Postgres refuses NUL; no name or login has one)."""
    if any(ord(ch) < 32 for ch in value):
        raise ValueError("must not contain control characters")
    return value


Id = Annotated[int, Field(ge=1, le=MAX_ID)]
Text = Annotated[str, AfterValidator(_printable)]
Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), AfterValidator(_printable)
]


class FieldError(Schema):
    field: str
    message: str


class SkipOut(Schema):
    code: str
    reason: str
    count: int
    examples: list[str]


class PlanOut(Schema):
    """The confirmation dialog's plan: who will be acted on and why the others are skipped."""

    action: str
    channel: str
    selected: int
    eligible: int
    steps: dict[str, int]
    skipped: list[SkipOut]
    unknown_ids: int
    digest: str


class ErrorOut(Schema):
    detail: str
    errors: list[FieldError] = []
    plan: PlanOut | None = None


class DeviceBadgeOut(Schema):
    label: str
    title: str
    tone: str


class UserRowOut(Schema):
    id: int
    display_name: str
    login_id: str
    email: str
    department: str
    last_seen_at: datetime | None
    vpp_status: str | None
    devices: list[DeviceBadgeOut]


class UserPageOut(Schema):
    count: int
    page: int
    size: int
    pages: int
    sort: str
    results: list[UserRowOut]


class UserOut(Schema):
    id: int
    display_name: str
    login_id: str
    email: str
    department: str
    is_active: bool
    last_seen_at: datetime | None
    created_at: datetime
    updated_at: datetime


class UserCreateIn(Schema):
    display_name: Name
    login_id: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=150)]
    email: Annotated[str, StringConstraints(strip_whitespace=True, max_length=254)] = ""
    department: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] = ""


class UserUpdateIn(Schema):
    display_name: Name | None = None
    email: Annotated[str, StringConstraints(strip_whitespace=True, max_length=254)] | None = None
    department: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = None
    is_active: bool | None = None


Platform = Literal["ios", "ipados", "macos", "android", "windows"]
ActivationState = Literal["activated", "pending", "deactivated"]


class DeviceOut(Schema):
    id: int
    user_id: int
    platform: str
    activation_state: str
    serial_number: str
    model: str
    os_version: str
    has_push_token: bool
    last_seen_at: datetime | None


class DeviceCreateIn(Schema):
    platform: Platform
    activation_state: ActivationState = "pending"
    serial_number: Annotated[str, StringConstraints(max_length=64)] = ""
    model: Annotated[str, StringConstraints(max_length=100)] = ""
    os_version: Annotated[str, StringConstraints(max_length=32)] = ""


class DeviceUpdateIn(Schema):
    activation_state: ActivationState | None = None
    serial_number: Annotated[str, StringConstraints(max_length=64)] | None = None
    model: Annotated[str, StringConstraints(max_length=100)] | None = None
    os_version: Annotated[str, StringConstraints(max_length=32)] | None = None


class VppHistoryOut(Schema):
    job_id: int
    action: str
    status: str
    reason: str
    error_number: int | None
    at: datetime


class VppUserOut(Schema):
    user_id: int
    status: str  # "none" when the user was never sent to Apple
    client_user_id: UUID | None
    apple_email: str
    managed_apple_account: str  # the linked Managed Apple Account ("" when none)
    invited_at: datetime | None
    invitation_count: int
    last_synced_at: datetime | None
    last_error: str
    history: list[VppHistoryOut]


class UserFilterIn(Schema):
    """The Users page's filters (same names and values as its query string)."""

    q: Annotated[str, StringConstraints(max_length=200)] = ""
    platform: Literal["", "ios", "ipados", "macos", "android", "windows"] = ""
    activated: Literal["", "yes", "no"] = ""
    vpp_status: Literal["", "none", "pending", "invited", "associated", "retired"] = ""
    apple_account: Literal["", "shared"] = ""


class JobStartIn(Schema):
    """Exactly one of ``user_ids`` (at most 5,000) or ``filter`` ("all users matching").

    ``action``: the Users page's bulk actions (vpp/bulk_views.py ACTION_SLUGS); "convert" links
    Managed Apple Accounts silently (docs/apple-vpp.md#managed-apple-accounts)."""

    action: Literal["invite", "delete", "sync", "convert"]
    user_ids: list[Id] | None = Field(None, max_length=5000)
    filter: UserFilterIn | None = None
    dry_run: bool = False


class JobOut(Schema):
    id: int
    action: str
    status: str
    phase: str
    total: int
    succeeded: int
    failed: int
    skipped: int
    pending: int
    error: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    retry_of: int | None
    retry_after_until: datetime | None


class JobStartOut(Schema):
    job: JobOut | None
    plan: PlanOut
    replayed: bool = False


class JobItemOut(Schema):
    user_id: int | None
    user: str
    status: str
    skip_reason: str
    reason: str
    apple_error_number: int | None
    client_user_id: UUID | None
    attempts: int


class JobItemPageOut(Schema):
    count: int
    page: int
    pages: int
    results: list[JobItemOut]


class HealthOut(Schema):
    token_health: str
    token_health_label: str
    detail: str
    checked_at: datetime | None
    expires_at: datetime | None
    organization: str
    organizational_unit: str
    assignment_method: str
    invitation_channel: str
    actions_disabled_reason: str | None


class PushTokenIn(Schema):
    """The agent app's APNs device token, hex (64 characters today; Apple allows longer)."""

    push_token: Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{64,200}$")]


class PushTokenOut(Schema):
    device_id: int
    registered: bool
