"""Request-rate limiting for Apple's VPP service, per content token (no HTTP here).

Apple allows ``maxRequestPerSecond`` requests per second *per location / sToken* (Service
Config; docs/apple-vpp.md#rate-limit), and calling again before a ``Retry-After`` has passed
can extend the block or get the organisation suspended (docs/apple-vpp.md#retry-after). Both rules concern the
token, not one worker, so:

``RedisRateLimiter`` shares the token's schedule and a "pause until" mark between every
process that uses the same Redis (web, workers, beat, several machines). Both live in atomic
Lua scripts and use Redis' own clock, so processes with skewed clocks agree. There is no
in-process variant: the embedded default runs a private Redis too (docs/embedded.md), because
a worker pool is several processes even on one machine.

Algorithm: requests are *spaced* ``window / rate`` apart (GCRA with no burst): each caller
reserves the next free slot and sleeps until it. Any one-second window then holds at most
``rate`` requests, requests never bunch at window edges (a sliding window admits ``rate`` at
once, then stalls, and latency makes the next window start late), and one atomic call per
request is enough, with first-come-first-served fairness between processes.

Keys are a hash of the token (``token_key``), never the token itself: Redis keys show up
in MONITOR output, slow logs and dumps.

``rate`` requests are spread over slightly more than one second (``DEFAULT_WINDOW``, or
settings.VPP_RATE_LIMIT_WINDOW_MS): a request admitted here reaches Apple a few milliseconds
later, and uneven network/scheduling delays could otherwise put ``rate + 1`` arrivals inside
one of Apple's seconds.
"""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Protocol

DEFAULT_WINDOW = 1.05  # seconds; see the module docstring
_KEY_PREFIX = "kmconsole:vpp"


class RateLimitPaused(Exception):
    """Waiting for a slot would take longer than the caller allows (a long Retry-After pause)."""

    def __init__(self, wait: float):
        super().__init__(f"requests for this token are paused for another {wait:.1f} s")
        self.wait = wait


def token_key(token: str) -> str:
    """A stable, non-reversible name for a token's limiter state."""
    return hashlib.sha256(f"kmconsole-vpp-ratelimit:{token}".encode()).hexdigest()[:32]


class RateLimiter(Protocol):
    def acquire(self, key: str, *, rate: int, max_wait: float = ...) -> None:
        """Block until one request may be sent; raise RateLimitPaused if that exceeds max_wait."""

    def pause(self, key: str, seconds: float) -> None:
        """Hold back every caller of this key for `seconds` (never shortens an existing pause)."""

    def paused_for(self, key: str) -> float:
        """Seconds left in the current pause (0 when not paused)."""


# GCRA-style reservation in Redis, on Redis' clock in milliseconds: the key holds the next free
# slot; each caller atomically takes max(next slot, now, pause end) and moves it on by one
# interval, then sleeps until its slot. Values stay below 14 significant digits because Lua 5.1
# formats numbers with "%.14g" when passing them to redis.call.
_ACQUIRE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local max_wait = tonumber(ARGV[2])
local next_slot = tonumber(redis.call('GET', KEYS[1]) or '0')
local pause_until = tonumber(redis.call('GET', KEYS[2]) or '0')
local slot = math.max(next_slot, now, pause_until)
local wait = slot - now
if wait > max_wait then
  return {0, math.ceil(wait)}
end
local new_next = slot + interval
redis.call('SET', KEYS[1], string.format('%.3f', new_next), 'PX', math.ceil(new_next - now) + 1000)
return {1, math.ceil(wait)}
"""

_PAUSE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ms = tonumber(ARGV[1])
local until_ms = now + ms
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ms > current then
  redis.call('SET', KEYS[1], until_ms, 'PX', ms + 1000)
end
return 0
"""

_PAUSED_FOR_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local pause_until = tonumber(redis.call('GET', KEYS[1]) or '0')
if pause_until > now then return pause_until - now end
return 0
"""


class RedisRateLimiter:
    """Request spacing and pause mark shared through Redis (atomic Lua scripts).

    ``window``: seconds over which ``rate`` requests are spread; ``prefix``: the Redis key prefix
    (keys ``<prefix>:next:<key>`` and ``<prefix>:pause:<key>``, expiring on their own); ``sleep``:
    how to wait (tests record the waits instead). Redis errors (``redis.RedisError``) propagate.
    """

    def __init__(self, redis_client, *, window: float = DEFAULT_WINDOW, prefix: str = _KEY_PREFIX, sleep=time.sleep):
        self.redis = redis_client
        self.window = window
        self.prefix = prefix
        self._sleep = sleep
        self._acquire = redis_client.register_script(_ACQUIRE_LUA)
        self._pause = redis_client.register_script(_PAUSE_LUA)
        self._paused_for = redis_client.register_script(_PAUSED_FOR_LUA)

    @classmethod
    def from_url(cls, url: str, **kwargs) -> RedisRateLimiter:
        import redis

        return cls(redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5), **kwargs)

    def acquire(self, key: str, *, rate: int, max_wait: float = float("inf")) -> None:
        """Block until one request for KEY may be sent at RATE per window; RateLimitPaused past MAX_WAIT s."""
        interval = self.window / max(1, int(rate))
        deadline = time.monotonic() + max_wait
        while True:
            wait, reserved = self._reserve(key, interval, max(0.0, deadline - time.monotonic()))
            if not reserved:
                raise RateLimitPaused(wait)
            if wait <= 0:
                return
            self._sleep(wait)
            if self.paused_for(key) <= 0:
                return
            # A Retry-After arrived while we slept: our slot is void, queue again after the pause.

    def _keys(self, key: str) -> tuple[str, str]:
        return f"{self.prefix}:next:{key}", f"{self.prefix}:pause:{key}"

    def _reserve(self, key: str, interval: float, max_wait: float) -> tuple[float, bool]:
        """Reserve the next slot unless it is more than MAX_WAIT away: (seconds until it, reserved?)."""
        allowed_ms = min(max_wait * 1000, 1e12)
        reserved, wait_ms = self._acquire(keys=self._keys(key), args=[f"{interval * 1000:.3f}", f"{allowed_ms:.0f}"])
        return int(wait_ms) / 1000, bool(reserved)

    def pause(self, key: str, seconds: float) -> None:
        """Hold back every caller of KEY for SECONDS, in every process (never shortens a pause)."""
        ms = max(0, int(seconds * 1000))
        if ms:
            self._pause(keys=[self._keys(key)[1]], args=[ms])

    def paused_for(self, key: str) -> float:
        """Seconds left in KEY's pause (0 when not paused)."""
        return int(self._paused_for(keys=[self._keys(key)[1]])) / 1000


_default_lock = threading.Lock()
_default: dict[tuple[str, float], RateLimiter] = {}


def default_rate_limiter() -> RateLimiter:
    """The process-wide limiter on settings.REDIS_URL (the private Redis when none is configured).

    Window: settings.VPP_RATE_LIMIT_WINDOW_MS (default ``DEFAULT_WINDOW``).
    """
    from django.conf import settings

    window = getattr(settings, "VPP_RATE_LIMIT_WINDOW_MS", DEFAULT_WINDOW * 1000) / 1000
    with _default_lock:
        limiter = _default.get((settings.REDIS_URL, window))
        if limiter is None:
            limiter = RedisRateLimiter.from_url(settings.REDIS_URL, window=window)
            _default[(settings.REDIS_URL, window)] = limiter
        return limiter
