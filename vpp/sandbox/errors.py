"""Apple's v2 error numbers, messages and HTTP statuses (docs/apple-vpp.md#errors)."""

from __future__ import annotations

from typing import Any

# number -> (HTTP status when synchronous, message)
ERRORS: dict[int, tuple[int, str]] = {
    9601: (401, "Login required"),
    9602: (400, "Invalid argument"),
    9603: (500, "Internal error. Please try again later."),
    9609: (400, "Unable to find the registered user."),
    9610: (400, "License not found."),
    9621: (401, "The sToken has expired. Download a new token from Apple Business or Apple School Manager."),
    9622: (401, "Invalid authentication token."),
    9623: (400, "Invalid APNs token."),
    9625: (401, "The sToken has been revoked."),
    9634: (410, "The service is no longer available."),
    9635: (400, "Cannot associate the Apple Account with this user."),
    9637: (403, "This operation is not allowed for facilitator accounts."),
    9641: (400, "The Apple Account is already associated with another user."),
    9644: (503, "The service is in maintenance mode."),
    9646: (429, "There have been too many recent requests for this organization. Try again later."),
    9650: (400, "The page index is out of range."),
    9700: (400, "Too many assets were specified."),
    9701: (400, "Too many clientUserIds were specified."),
    9702: (400, "Too many serialNumbers were specified."),
    9703: (400, "Duplicate assets were specified."),
    9704: (400, "Duplicate clientUserIds were specified."),
    9705: (400, "Duplicate serialNumbers were specified."),
    9706: (400, "The asset isn't revocable."),
    9707: (400, "The asset isn't device-assignable."),
    9708: (400, "The eventId was not found."),
    9709: (400, "There are not enough licenses available."),
    9710: (400, "notificationUrl and notificationAuthToken must be specified together."),
    9711: (400, "The notificationUrl or notificationAuthToken is too long."),
    9712: (400, "The notificationUrl must be a valid HTTPS URL."),
    9713: (400, "The mdmInfo metadata is too long."),
    9714: (400, "Too many users were specified."),
    9715: (400, "Duplicate users were specified."),
    9716: (400, "A registered user already exists with the specified clientUserId."),
    9717: (400, "The email address is invalid."),
    9718: (400, "Assets are required."),
    9719: (400, "clientUserIds or serialNumbers are required."),
    9720: (400, "Users are required."),
    9721: (400, "The versionId is invalid."),
    9722: (401, "The request must include an authorization header that matches the format 'Bearer {sToken}'."),
    9723: (400, "mdmInfo requires id, name and metadata."),
    9724: (400, "The mdmInfo id is too long."),
    9725: (400, "The mdmInfo name is too long."),
    9726: (405, "The HTTP method isn't supported."),
    9727: (415, "The Content-Type isn't supported; use application/json."),
    9728: (400, "The notification URL is unreachable."),
    9729: (503, "The service is temporarily unavailable. Try again later."),
}


def error_body(number: int, message: str | None = None, **error_info: list[Any]) -> dict[str, Any]:
    """An ErrorResponse; ``error_info`` keys are clientUserIds / serialNumbers / assets."""
    body: dict[str, Any] = {"errorNumber": number, "errorMessage": message or ERRORS.get(number, (400, ""))[1]}
    info = {key: value for key, value in error_info.items() if value}
    if info:
        body["errorInfo"] = info
    return body


class ApiError(Exception):
    """A synchronous error answer: Apple's ErrorResponse with its HTTP status."""

    def __init__(self, number: int, message: str | None = None, *, status: int | None = None, **error_info):
        self.number = number
        self.status = status or ERRORS.get(number, (400, ""))[0]
        self.body = error_body(number, message, **error_info)
        self.headers: dict[str, str] = {}
        super().__init__(self.body["errorMessage"])
