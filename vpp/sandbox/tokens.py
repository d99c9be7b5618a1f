"""Content tokens (sToken / .vpptoken) as Apple issues them: Base64 of JSON {token, expDate, orgName}.

The inner ``token`` field identifies a location in the sandbox: each location has its own
users, assets, events and client config.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

DEFAULT_ORG = "Sandbox Organisation"
DEFAULT_LOCATION = "sandbox-location-1"

# Apple's documented form: numeric offset without a colon, e.g. 2030-11-08T22:33:22+0000.
EXP_DATE_FORMAT = "%Y-%m-%dT%H:%M:%S%z"


class MalformedToken(ValueError):
    """The bearer value is not Base64 of a JSON object with token, expDate and orgName."""


@dataclass(frozen=True)
class SToken:
    raw: str
    location: str
    org_name: str
    expires_at: datetime

    def expired(self, now: datetime | None = None) -> bool:
        return (now or datetime.now(UTC)) >= self.expires_at


def format_date(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(EXP_DATE_FORMAT)


def mint_token(
    *,
    org: str = DEFAULT_ORG,
    location: str = DEFAULT_LOCATION,
    expires_in_days: float = 365,
    expired: bool = False,
    now: datetime | None = None,
) -> str:
    """A Base64 sToken; ``expired=True`` gives one that expired a day ago."""
    now = now or datetime.now(UTC)
    expires_at = now - timedelta(days=1) if expired else now + timedelta(days=expires_in_days)
    payload = {"token": location, "expDate": format_date(expires_at.replace(microsecond=0)), "orgName": org}
    return base64.b64encode(json.dumps(payload).encode()).decode()


def decode_token(raw: str) -> SToken:
    try:
        data = json.loads(base64.b64decode(raw.strip(), validate=True))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise MalformedToken("not Base64 of a JSON object") from None
    if not isinstance(data, dict):
        raise MalformedToken("not a JSON object")
    location, exp_date, org = data.get("token"), data.get("expDate"), data.get("orgName")
    if not (isinstance(location, str) and location and isinstance(exp_date, str) and isinstance(org, str)):
        raise MalformedToken("token, expDate and orgName are required")
    try:
        expires_at = datetime.fromisoformat(exp_date)
    except ValueError:
        raise MalformedToken("expDate is not an ISO-8601 date") from None
    if expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)
    return SToken(raw=raw.strip(), location=location, org_name=org, expires_at=expires_at)
