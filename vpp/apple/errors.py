"""Apple's VPP error catalogue: a sentence per error number, classification into named
exceptions (transient: retry later; permanent: show the admin) and Retry-After parsing.

Error numbers: https://developer.apple.com/documentation/devicemanagement/handling-error-responses
(the project's notes and the classification: docs/apple-vpp.md#errors).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vpp.apple.types import BatchOutcome, EventStatus

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------

# Sentences for admins, per Apple error number (docs/apple-vpp.md#errors). Apple's own errorMessage is kept on the
# exception as ``apple_message`` for support; these explain what to do.
ERROR_MESSAGES: dict[int, str] = {
    9600: "A required value was missing from the request to Apple.",
    9601: "Apple did not accept the content token (login required). Upload the content token again.",
    9602: "Apple rejected a value in the request as invalid.",
    9603: "Apple's service had an internal error.",
    9609: "Apple could not find this user in the VPP location.",
    9610: "Apple could not find the licence (it may have been revoked or moved meanwhile).",
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
    9644: "Apple's service is in maintenance.",
    9646: "Too many requests were sent to Apple for this organisation.",
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
    9729: "Apple's service is temporarily unavailable.",
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
        error_info: dict | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.error_number = error_number
        self.http_status = http_status
        self.apple_message = apple_message
        # Apple's ``errorInfo`` as sent (``clientUserIds``, ``serialNumbers``, ``assets``), kept whole:
        # an error that names users concerns those users only (docs/apple-vpp.md#errors).
        self.error_info: dict = dict(error_info) if isinstance(error_info, dict) else {}
        # For batched calls (create/update/retire/revoke): the event ids Apple accepted, in
        # batch order, and every batch's outcome. The caller must track the accepted ones.
        self.event_ids: list[str] = []
        self.batches: list[BatchOutcome] = []

    @property
    def client_user_ids(self) -> list[str]:
        """The ``clientUserId``s Apple named in ``errorInfo`` (empty: the error concerns the whole request)."""
        return _named(self.error_info.get("clientUserIds"))

    @property
    def serial_numbers(self) -> list[str]:
        """The serial numbers Apple named in ``errorInfo``."""
        return _named(self.error_info.get("serialNumbers"))

    def __str__(self) -> str:
        if self.error_number is not None:
            return f"{self.message} (Apple error {self.error_number})"
        return self.message


def _named(value) -> list[str]:
    if not isinstance(value, list):
        return []
    return [str(item) for item in value if item is not None and str(item).strip()]


RETRIED_LATER = "The action will be retried later."


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


class RateLimiterUnavailableError(ServiceUnavailableError):
    """Our own infrastructure, not Apple: Redis (the shared rate limiter) is unreachable."""


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


class OtherManagerError(PermanentVppError):
    """An answer's ``mdmInfo`` names another device management service as the unit's manager.

    ``manager_name`` is its ``mdmInfo.name``. Raised by the client before its next request,
    so nothing more is written to Apple (docs/apple-vpp.md#mdminfo).
    """

    def __init__(self, manager_name: str):
        self.manager_name = (manager_name or "another MDM").strip() or "another MDM"
        super().__init__(
            f"The organizational unit is now managed by {self.manager_name!r}, another device management "
            "service; kmconsole stopped before writing to Apple again. Take it over on the VPP Server "
            "Setting page, or leave it to that service."
        )


class InvalidRequestError(PermanentVppError):
    """Other 4xx / argument errors (97xx), and unexpected answers that retrying won't fix."""


def parse_retry_after(
    value: str | None, *, now: datetime | None = None, server_date: str | None = None
) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date (RFC 9110).

    An HTTP-date is measured against ``server_date`` (the same response's ``Date`` header) when
    it is readable, so a local clock that runs fast or slow does not shorten or stretch the
    wait (the delay is relative to the response's own time:
    https://www.rfc-editor.org/rfc/rfc9110#section-10.2.3); else against
    ``now`` (default: the local clock, UTC).
    """
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
        seconds = (when - (_http_date(server_date) or now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def _http_date(value: str | None) -> datetime | None:
    if not value or not value.strip():
        return None
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def error_for(
    *,
    http_status: int | None,
    error_number: int | None = None,
    apple_message: str | None = None,
    retry_after: float | None = None,
    outcome_unknown: bool = False,
    error_info: dict | None = None,
) -> VppError:
    """Map an Apple error number and/or HTTP status to the named exception (docs/apple-vpp.md#errors).

    ``error_info`` is Apple's ``errorInfo`` (kept on the exception: ``client_user_ids``). A
    transient exception's message says that it will be retried; the job engine does retry them.
    """
    message = _message_for(error_number, http_status, apple_message)
    retried = f"{message} {RETRIED_LATER}" if RETRIED_LATER not in message else message
    common = {
        "error_number": error_number,
        "http_status": http_status,
        "apple_message": apple_message,
        "error_info": error_info,
    }
    if error_number in _RATE_LIMIT_NUMBERS or (error_number is None and http_status == 429):
        return RateLimitedError(retried, retry_after=retry_after, **common)
    if error_number in _TRANSIENT_NUMBERS:
        return ServiceUnavailableError(retried, retry_after=retry_after, outcome_unknown=outcome_unknown, **common)
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
        return RateLimitedError(retried, retry_after=retry_after, **common)
    if status >= 500:
        return ServiceUnavailableError(retried, retry_after=retry_after, outcome_unknown=outcome_unknown, **common)
    if error_number is None and status == 401:
        return TokenInvalidError(message, **common)
    if error_number is None and status == 403:
        return NotPermittedError(message, **common)
    return InvalidRequestError(message, **common)


def _message_for(error_number: int | None, http_status: int | None, apple_message: str | None) -> str:
    if error_number in ERROR_MESSAGES:
        return ERROR_MESSAGES[error_number]
    if error_number is not None:
        if apple_message and apple_message.strip():
            return f"Apple reported an error: “{apple_message.strip()[:200]}”."
        return "Apple reported an error without an explanation."
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
        return f"Apple's service is unavailable (HTTP {status})."
    return f"Apple rejected the request (HTTP {status})."
