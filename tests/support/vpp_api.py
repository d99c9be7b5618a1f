"""Small builders shared by the VPP client tests (tokens, JSON bodies)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

SECRET_INNER = "S3CR3T-inner-token-value"


def make_stoken(*, exp: str | None = None, org: str = "Example School", token: str = SECRET_INNER, **extra) -> str:
    if exp is None:
        exp = (datetime.now(UTC) + timedelta(days=200)).strftime("%Y-%m-%dT%H:%M:%S+0000")
    payload = {"token": token, "expDate": exp, "orgName": org, **extra}
    return base64.b64encode(json.dumps(payload).encode()).decode()


def b64(raw: bytes | str) -> str:
    return base64.b64encode(raw.encode() if isinstance(raw, str) else raw).decode()


SERVICE_CONFIG = {
    "errorCodes": [{"errorNumber": 9602, "errorMessage": "Invalid argument"}],
    "limits": {"maxUsers": 3, "maxRevokeClientUserIds": 2, "maxRequestPerSecond": 50, "maxAssets": 25},
    "notificationTypes": ["ASSET_MANAGEMENT", "USER_MANAGEMENT", "USER_ASSOCIATED", "ASSET_COUNT"],
    "urls": {
        "invitationEmail": "https://invite.example/associate?inviteCode=%25inviteCode%25&mt=8",
        "getUsers": "https://vpp.example/mdm/v2/users",
    },
}


def max_in_any_window(stamps: list[float], window: float) -> int:
    """The most timestamps inside any half-open interval [t, t + window)."""
    stamps = sorted(stamps)
    best, start = 0, 0
    for end, t in enumerate(stamps):
        while t - stamps[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best
