"""APNs provider: app pushes to our agent app with token-based (.p8 / ES256 JWT) auth.

The only module that speaks HTTP to the Apple Push Notification service (like vpp/apple/client.py
for VPP). Apple's rules it follows
(https://developer.apple.com/documentation/usernotifications/establishing-a-token-based-connection-to-apns):

- The provider token is an ES256 JWT, header ``{"alg": "ES256", "kid": <key id>}``, claims
  ``{"iss": <team id>, "iat": <unix seconds>}``, signed with the .p8 key.
- Reuse it for 20–60 minutes: older than an hour → 403 ExpiredProviderToken; minting more
  often → 429 TooManyProviderTokenUpdates. So one token is minted per (team, key) and SHARED by
  every worker process in Redis (settings.REDIS_URL; the embedded default's private Redis when
  none is configured, docs/embedded.md). It is refreshed early, after
  settings.APNS_TOKEN_REFRESH_SECONDS (default 40 min), well before Apple's hour.
- HTTP/2 only (``httpx[http2]``); an ``http://`` host (our fake) gets prior-knowledge h2c.

Per-device outcomes are returned as a typed PushResult (sent / unregistered / bad device
token); everything else raises: TransientApnsError (retry later: 429, 5xx, connection
errors) or PermanentApnsError (our configuration or request is wrong: do not retry).
"""

from __future__ import annotations

import enum
import functools
import hashlib
import json
import logging
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import quote

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, EllipticCurvePrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_private_key

from vpp.apple.errors import parse_retry_after

logger = logging.getLogger(__name__)

PRODUCTION_HOST = "https://api.push.apple.com"
DEVELOPMENT_HOST = "https://api.sandbox.push.apple.com"
MAX_PAYLOAD_BYTES = 4096
# Apple accepts a provider token for an hour; never hand out one older than this.
TOKEN_HARD_MAX_AGE = 55 * 60
DEFAULT_REFRESH_SECONDS = 40 * 60
INVITATION_URL_KEY = "invitationURL"  # custom payload key our agent app opens
INVITATION_COLLAPSE_ID = "vpp-invitation"  # a newer invitation replaces an older one on the device
INVITATION_LIFETIME = 3 * 24 * 3600  # APNs keeps it this long for a device that is offline
_APPLE_ID_RE = re.compile(r"^[A-Z0-9]{10}$")  # key ids and team ids are 10 characters


# --- errors ------------------------------------------------------------------------------------


class ApnsError(Exception):
    """Base class. ``reason`` is Apple's reason string; ``message`` a sentence for an admin."""

    def __init__(self, message: str, *, reason: str = "", http_status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.http_status = http_status


class TransientApnsError(ApnsError):
    """Try again later (with backoff); ``retry_after`` in seconds when APNs said so."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ApnsRateLimitedError(TransientApnsError):
    """429: too many pushes to one device, or too many provider-token updates."""


class ApnsUnavailableError(TransientApnsError):
    """5xx, timeouts, connection errors, the shared token cache unreachable."""


class PermanentApnsError(ApnsError):
    """Retrying will not help: show the admin."""


class ApnsNotConfiguredError(PermanentApnsError):
    """No key / key id / team id / topic configured: the push channel is off."""


class ApnsKeyError(PermanentApnsError, ValueError):
    """The .p8 key (or key id / team id) is malformed."""


class ApnsConfigError(PermanentApnsError):
    """APNs refused our credentials or topic (403 InvalidProviderToken, 400 BadTopic, ...)."""


class ApnsRequestError(PermanentApnsError):
    """APNs refused the request itself (413 PayloadTooLarge, 400 BadPriority, ...): our bug."""


# Apple's reason strings → a sentence an admin can act on ("Handling notification responses").
_REASON_TEXT = {
    "BadDeviceToken": "The device token is not valid (or belongs to the other APNs environment).",
    "DeviceTokenNotForTopic": "The device token does not belong to the configured app (topic).",
    "MissingDeviceToken": "No device token was given.",
    "Unregistered": "The device is no longer registered for notifications from our app.",
    "ExpiredToken": "The device token has expired.",
    "BadTopic": "APNs says the topic (app bundle id) is not valid.",
    "TopicDisallowed": "APNs does not allow pushes to this topic (app bundle id) with our key.",
    "MissingTopic": "No APNs topic (app bundle id) is configured.",
    "BadCertificateEnvironment": "The key does not match the APNs environment (production/development).",
    "BadEnvironmentKeyIdInToken": "The key id is not valid for this APNs environment.",
    "InvalidProviderToken": "APNs rejected our provider token: check the .p8 key, key id and team id.",
    "MissingProviderToken": "No provider token was sent.",
    "ExpiredProviderToken": "APNs says our provider token is older than an hour: check the server clock.",
    "UnrelatedKeyIdInToken": "The key id does not belong to the configured team.",
    "Forbidden": "APNs refused the request (Forbidden).",
    "PayloadTooLarge": "The notification is larger than 4096 bytes.",
    "PayloadEmpty": "The notification was empty.",
    "BadPriority": "The priority is not valid.",
    "BadExpirationDate": "The expiration date is not valid.",
    "BadCollapseId": "The collapse id is too long.",
    "BadMessageId": "The apns-id is not a UUID.",
    "InvalidPushType": "The push type is not valid.",
    "TooManyRequests": "Too many notifications to this device in a short time.",
    "TooManyProviderTokenUpdates": "Our provider token changed too often; APNs asks us to slow down.",
    "InternalServerError": "APNs had an internal error.",
    "ServiceUnavailable": "APNs is unavailable.",
    "Shutdown": "The APNs server is shutting down.",
}
_BAD_DEVICE_REASONS = {"BadDeviceToken", "DeviceTokenNotForTopic", "MissingDeviceToken"}
_CONFIG_REASONS = {"BadTopic", "TopicDisallowed", "MissingTopic", "BadCertificateEnvironment", "BadCertificate"}


def reason_text(reason: str, http_status: int | None = None) -> str:
    return _REASON_TEXT.get(reason) or f"APNs answered {http_status or '?'} {reason or '(no reason given)'}."


# --- configuration and the key ------------------------------------------------------------------


def load_provider_key(pem: str | bytes) -> EllipticCurvePrivateKey:
    """The .p8 (PKCS#8 PEM, EC P-256) signing key; ApnsKeyError with the cause otherwise."""
    data = pem.encode() if isinstance(pem, str) else pem
    if b"-----BEGIN PRIVATE KEY-----" not in data:
        raise ApnsKeyError("The APNs key is not a .p8 file (no '-----BEGIN PRIVATE KEY-----' block).")
    try:
        key = load_pem_private_key(data.strip() + b"\n", password=None)
    except TypeError:
        raise ApnsKeyError("The APNs key is password-protected; Apple's .p8 keys are not.") from None
    except ValueError:
        raise ApnsKeyError("The APNs key cannot be read: the .p8 file is damaged or truncated.") from None
    if not isinstance(key, EllipticCurvePrivateKey) or not isinstance(key.curve, SECP256R1):
        raise ApnsKeyError("The APNs key is not an EC P-256 key (ES256), which Apple's .p8 keys are.")
    return key


@dataclass(frozen=True)
class ApnsConfig:
    base_url: str  # https://api.push.apple.com, https://api.sandbox.push.apple.com, or the fake
    key_id: str
    team_id: str
    topic: str  # the agent app's bundle id
    private_key_pem: str = field(repr=False)
    refresh_seconds: int = DEFAULT_REFRESH_SECONDS
    timeout: float = 10.0

    @classmethod
    def from_settings(cls) -> ApnsConfig:
        """From settings.APNS_* (env). ApnsNotConfiguredError when any part is missing."""
        from django.conf import settings

        missing = [
            name
            for name in ("APNS_KEY", "APNS_KEY_ID", "APNS_TEAM_ID", "APNS_TOPIC")
            if not getattr(settings, name, "")
        ]
        if missing:
            raise ApnsNotConfiguredError(f"Push notifications are not configured ({', '.join(missing)} not set).")
        return cls(
            base_url=settings.APNS_HOST,
            key_id=settings.APNS_KEY_ID,
            team_id=settings.APNS_TEAM_ID,
            topic=settings.APNS_TOPIC,
            private_key_pem=settings.APNS_KEY,
            refresh_seconds=settings.APNS_TOKEN_REFRESH_SECONDS,
            timeout=settings.APNS_TIMEOUT,
        )

    def validate(self) -> EllipticCurvePrivateKey:
        """Fail loudly on a malformed key, key id or team id; returns the loaded key."""
        if not _APPLE_ID_RE.match(self.key_id):
            raise ApnsKeyError(f"The APNs key id must be 10 letters/digits as Apple shows it, got {self.key_id!r}.")
        if not _APPLE_ID_RE.match(self.team_id):
            raise ApnsKeyError(f"The APNs team id must be 10 letters/digits, got {self.team_id!r}.")
        return load_provider_key(self.private_key_pem)


# --- the shared provider-token cache --------------------------------------------------------------


class TokenStore(Protocol):
    """Where the one current provider token lives; shared by every process that uses it."""

    def get(self, key: str) -> str | None: ...

    def compare_and_set(self, key: str, expected: str | None, value: str, ttl: int) -> bool:
        """Store ``value`` only if the current value is still ``expected`` (None: absent)."""
        ...

    def compare_and_delete(self, key: str, expected: str) -> None: ...


class MemoryTokenStore:
    """One process only (tests, or a single-process tool)."""

    def __init__(self) -> None:
        self._data: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> str | None:
        with self._lock:
            value, expires = self._data.get(key, (None, 0.0))
            return value if value is not None and expires > time.time() else None

    def compare_and_set(self, key: str, expected: str | None, value: str, ttl: int) -> bool:
        with self._lock:
            current, expires = self._data.get(key, (None, 0.0))
            if expires <= time.time():
                current = None
            if current != expected:
                return False
            self._data[key] = (value, time.time() + ttl)
            return True

    def compare_and_delete(self, key: str, expected: str) -> None:
        with self._lock:
            if self._data.get(key, (None, 0))[0] == expected:
                del self._data[key]


_CAS_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if (current == false and ARGV[1] == '') or current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
"""
_CAD_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisTokenStore:
    """Shared by every worker on every machine using the same Redis (settings.REDIS_URL)."""

    def __init__(self, redis_client) -> None:
        self._redis = redis_client
        self._cas = redis_client.register_script(_CAS_SCRIPT)
        self._cad = redis_client.register_script(_CAD_SCRIPT)

    @classmethod
    def from_url(cls, url: str) -> RedisTokenStore:
        import redis

        return cls(redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5, decode_responses=True))

    def get(self, key: str) -> str | None:
        return self._call(self._redis.get, key)

    def compare_and_set(self, key: str, expected: str | None, value: str, ttl: int) -> bool:
        return bool(self._call(self._cas, keys=[key], args=[expected or "", value, ttl]))

    def compare_and_delete(self, key: str, expected: str) -> None:
        self._call(self._cad, keys=[key], args=[expected])

    @staticmethod
    def _call(func, *args, **kwargs):
        import redis

        try:
            return func(*args, **kwargs)
        except redis.RedisError as exc:
            raise ApnsUnavailableError(f"The shared APNs token cache (Redis) is unreachable: {exc}") from exc


def default_token_store() -> TokenStore:
    """The store on settings.REDIS_URL, shared by all workers on all machines."""
    from django.conf import settings

    return _redis_store(settings.REDIS_URL)


@functools.cache
def _redis_store(url: str) -> RedisTokenStore:
    # One connection pool per process and URL, not one per batch of pushes.
    return RedisTokenStore.from_url(url)


class ProviderTokens:
    """Mints the ES256 provider token and shares it through a TokenStore.

    Compare-and-set makes concurrent refreshes converge on one token: a worker that loses the
    race uses the winner's token instead of its own, so APNs sees one token per window.
    """

    def __init__(self, config: ApnsConfig, store: TokenStore, *, clock=time.time) -> None:
        self._key = config.validate()
        self._config = config
        self._store = store
        self._clock = clock
        public = self._key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        # The key's fingerprint is part of the cache key, so a replaced .p8 never reuses a token.
        fingerprint = hashlib.sha256(public).hexdigest()[:16]
        self.cache_key = f"kmconsole:apns:provider-token:{config.team_id}:{config.key_id}:{fingerprint}"

    def current(self) -> str:
        now = self._clock()
        raw = self._store.get(self.cache_key)
        if raw is not None and self._fresh(raw, now):
            return json.loads(raw)["token"]
        minted = json.dumps({"token": self._mint(now), "iat": int(now)})
        if self._store.compare_and_set(self.cache_key, raw, minted, TOKEN_HARD_MAX_AGE):
            return json.loads(minted)["token"]
        winner = self._store.get(self.cache_key)
        return json.loads(winner or minted)["token"]

    def invalidate(self, token: str) -> None:
        """Drop ``token`` if it is still the shared one (APNs called it expired)."""
        raw = self._store.get(self.cache_key)
        if raw is not None and json.loads(raw)["token"] == token:
            self._store.compare_and_delete(self.cache_key, raw)

    def _fresh(self, raw: str, now: float) -> bool:
        try:
            iat = json.loads(raw)["iat"]
        except (ValueError, KeyError, TypeError):
            return False
        # A token "from the future" means a clock jumped back: mint a new one.
        return iat <= now + 60 and now - iat < self._config.refresh_seconds

    def _mint(self, now: float) -> str:
        logger.info("minting a new APNs provider token (key id %s)", self._config.key_id)
        return jwt.encode(
            {"iss": self._config.team_id, "iat": int(now)},
            self._key,
            algorithm="ES256",
            headers={"kid": self._config.key_id},
        )


# --- results and the provider ---------------------------------------------------------------------


class PushStatus(enum.StrEnum):
    SENT = "sent"
    UNREGISTERED = "unregistered"  # 410: the caller deactivates this device token
    BAD_DEVICE_TOKEN = "bad_device_token"  # 400 BadDeviceToken / DeviceTokenNotForTopic


@dataclass(frozen=True)
class PushResult:
    device_token: str
    status: PushStatus
    apns_id: str | None = None
    reason: str = ""
    message: str = ""
    http_status: int | None = None
    unregistered_at: datetime | None = None  # from 410's timestamp (ms): when APNs learnt it

    @property
    def ok(self) -> bool:
        return self.status is PushStatus.SENT


def invitation_payload(*, link: str, title: str, body: str) -> dict[str, Any]:
    """An alert our agent app shows; tapping it opens Apple's invitation link."""
    return {"aps": {"alert": {"title": title, "body": body}, "sound": "default"}, INVITATION_URL_KEY: link}


class ApnsProvider:
    """Sends pushes over one HTTP/2 connection (kept open, as Apple asks). Not thread-safe."""

    def __init__(
        self,
        config: ApnsConfig,
        *,
        token_store: TokenStore | None = None,
        client: httpx.Client | None = None,
        clock=time.time,
    ) -> None:
        self.config = config
        self.tokens = ProviderTokens(config, token_store or default_token_store(), clock=clock)
        self._clock = clock
        self._client = client or _http2_client(config)
        self._last_token = ""

    @classmethod
    def from_settings(cls, **kwargs: Any) -> ApnsProvider:
        return cls(ApnsConfig.from_settings(), **kwargs)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ApnsProvider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send_invitation(self, device_token: str, *, link: str, title: str, body: str) -> PushResult:
        return self.send(
            device_token,
            invitation_payload(link=link, title=title, body=body),
            collapse_id=INVITATION_COLLAPSE_ID,
            expiration=int(self._clock()) + INVITATION_LIFETIME,
        )

    def send(
        self,
        device_token: str,
        payload: dict[str, Any],
        *,
        push_type: str = "alert",
        priority: int = 10,
        expiration: int | None = None,
        collapse_id: str | None = None,
        apns_id: str | None = None,
    ) -> PushResult:
        content = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        if len(content) > MAX_PAYLOAD_BYTES:
            raise ApnsRequestError(reason_text("PayloadTooLarge"), reason="PayloadTooLarge")
        headers = {
            "apns-topic": self.config.topic,
            "apns-push-type": push_type,
            "apns-priority": str(priority),
            "apns-expiration": str(expiration or 0),
            "apns-id": apns_id or str(uuid.uuid4()),
            "content-type": "application/json",
        }
        if collapse_id:
            headers["apns-collapse-id"] = collapse_id
        path = f"/3/device/{quote(device_token, safe='')}"
        response = self._post(path, content, headers)
        if _reason(response) == "ExpiredProviderToken":
            # Our shared token went stale (a clock jumped?): drop it and try once with a new one.
            self.tokens.invalidate(self._last_token)
            response = self._post(path, content, headers)
        return _result(device_token, response)

    def _post(self, path: str, content: bytes, headers: dict[str, str]) -> httpx.Response:
        self._last_token = self.tokens.current()
        try:
            return self._client.post(
                path, content=content, headers={**headers, "authorization": f"bearer {self._last_token}"}
            )
        except httpx.TimeoutException as exc:
            raise ApnsUnavailableError(f"APNs did not answer in time ({exc.__class__.__name__}).") from exc
        except httpx.TransportError as exc:
            raise ApnsUnavailableError(f"Cannot reach APNs at {self.config.base_url} ({exc}).") from exc


def _http2_client(config: ApnsConfig) -> httpx.Client:
    timeout = httpx.Timeout(config.timeout, connect=min(config.timeout, 5.0))
    if config.base_url.startswith("http://"):
        # Cleartext: prior-knowledge HTTP/2 (h2c), only for a local fake.
        return httpx.Client(base_url=config.base_url, http1=False, http2=True, timeout=timeout)
    return httpx.Client(base_url=config.base_url, http2=True, timeout=timeout)


def _reason(response: httpx.Response) -> str:
    if response.status_code == 200:
        return ""
    try:
        data = response.json()
    except ValueError:
        return ""
    return str(data.get("reason", "")) if isinstance(data, dict) else ""


def _result(device_token: str, response: httpx.Response) -> PushResult:
    """Map APNs' answer: per-device outcomes as a PushResult, the rest as exceptions."""
    status = response.status_code
    apns_id = response.headers.get("apns-id")
    if status == 200:
        return PushResult(device_token, PushStatus.SENT, apns_id=apns_id, http_status=200)
    reason = _reason(response)
    message = reason_text(reason, status)
    if status == 410:
        return PushResult(
            device_token,
            PushStatus.UNREGISTERED,
            apns_id=apns_id,
            reason=reason or "Unregistered",
            message=message,
            http_status=410,
            unregistered_at=_timestamp(response),
        )
    if status == 400 and reason in _BAD_DEVICE_REASONS:
        return PushResult(
            device_token, PushStatus.BAD_DEVICE_TOKEN, apns_id=apns_id, reason=reason, message=message, http_status=400
        )
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    if status == 429:
        raise ApnsRateLimitedError(message, reason=reason, http_status=status, retry_after=retry_after)
    if status >= 500:
        raise ApnsUnavailableError(message, reason=reason, http_status=status, retry_after=retry_after)
    if status == 403 or reason in _CONFIG_REASONS:
        raise ApnsConfigError(message, reason=reason, http_status=status)
    raise ApnsRequestError(message, reason=reason, http_status=status)


def _timestamp(response: httpx.Response) -> datetime | None:
    try:
        millis = response.json().get("timestamp")
        return datetime.fromtimestamp(int(millis) / 1000, tz=UTC) if millis is not None else None
    except (ValueError, TypeError, AttributeError):
        return None
