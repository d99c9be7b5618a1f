"""Request-rate limiting for Apple's VPP service, per content token (no HTTP here).

Apple allows ``maxRequestPerSecond`` requests per second *per location / sToken* (Service
Config; docs/apple-vpp.md#rate-limit), and calling again before a ``Retry-After`` has passed
can extend the block or get the organisation suspended (docs/apple-vpp.md#retry-after). Both rules concern the
token, not one worker, so:

* ``RedisRateLimiter`` shares the token's schedule and a "pause until" mark between every
  process that uses the same Redis (web, workers, beat, several machines). Both live in
  atomic Lua scripts and use Redis' own clock, so processes with skewed clocks agree.
* ``InProcessRateLimiter`` does the same inside one process (threads) for the embedded
  single-machine setup without Redis.

Algorithm: requests are *spaced* ``window / rate`` apart (GCRA with no burst): each caller
reserves the next free slot and sleeps until it. Any one-second window then holds at most
``rate`` requests, requests never bunch at window edges (a sliding window admits ``rate`` at
once, then stalls, and latency makes the next window start late), and one atomic call per
request is enough, with first-come-first-served fairness between processes.

Keys are a hash of the token (``token_key``), never the token itself: Redis keys show up
in MONITOR output, slow logs and dumps.

``rate`` requests are spread over slightly more than one second (``DEFAULT_WINDOW``): a
request admitted here reaches Apple a few milliseconds later, and uneven network/scheduling
delays could otherwise put ``rate + 1`` arrivals inside one of Apple's seconds.
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


class _SlotLimiter:
    """The waiting loop shared by both limiters; subclasses reserve slots and keep pauses."""

    window: float
    _clock = staticmethod(time.monotonic)
    _sleep = staticmethod(time.sleep)

    def _reserve(self, key: str, interval: float, max_wait: float) -> tuple[float, bool]:
        """Reserve the next slot unless it is more than MAX_WAIT away: (seconds until it, reserved?)."""
        raise NotImplementedError

    def paused_for(self, key: str) -> float:
        raise NotImplementedError

    def acquire(self, key: str, *, rate: int, max_wait: float = float("inf")) -> None:
        interval = self.window / max(1, int(rate))
        deadline = self._clock() + max_wait
        while True:
            wait, reserved = self._reserve(key, interval, max(0.0, deadline - self._clock()))
            if not reserved:
                raise RateLimitPaused(wait)
            if wait <= 0:
                return
            self._sleep(wait)
            if self.paused_for(key) <= 0:
                return
            # A Retry-After arrived while we slept: our slot is void, queue again after the pause.


class InProcessRateLimiter(_SlotLimiter):
    """Thread-safe limiter for one process (same algorithm as RedisRateLimiter)."""

    def __init__(self, *, window: float = DEFAULT_WINDOW, clock=time.monotonic, sleep=time.sleep):
        self.window = window
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_slot: dict[str, float] = {}
        self._pause_until: dict[str, float] = {}

    def _reserve(self, key: str, interval: float, max_wait: float) -> tuple[float, bool]:
        with self._lock:
            now = self._clock()
            slot = max(self._next_slot.get(key, now), now, self._pause_until.get(key, now))
            wait = slot - now
            if wait > max_wait:
                return wait, False
            self._next_slot[key] = slot + interval
            return wait, True

    def pause(self, key: str, seconds: float) -> None:
        with self._lock:
            until = self._clock() + max(0.0, seconds)
            self._pause_until[key] = max(self._pause_until.get(key, 0.0), until)

    def paused_for(self, key: str) -> float:
        with self._lock:
            return max(0.0, self._pause_until.get(key, 0.0) - self._clock())


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


class RedisRateLimiter(_SlotLimiter):
    """Request spacing and pause mark shared through Redis (atomic Lua scripts)."""

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
        import redis  # imported here so the in-process limiter works without Redis installed/running

        return cls(redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5), **kwargs)

    def _keys(self, key: str) -> tuple[str, str]:
        return f"{self.prefix}:next:{key}", f"{self.prefix}:pause:{key}"

    def _reserve(self, key: str, interval: float, max_wait: float) -> tuple[float, bool]:
        allowed_ms = min(max_wait * 1000, 1e12)
        reserved, wait_ms = self._acquire(keys=self._keys(key), args=[f"{interval * 1000:.3f}", f"{allowed_ms:.0f}"])
        return int(wait_ms) / 1000, bool(reserved)

    def pause(self, key: str, seconds: float) -> None:
        ms = max(0, int(seconds * 1000))
        if ms:
            self._pause(keys=[self._keys(key)[1]], args=[ms])

    def paused_for(self, key: str) -> float:
        return int(self._paused_for(keys=[self._keys(key)[1]])) / 1000


_default_lock = threading.Lock()
_default: dict[str, RateLimiter] = {}


def default_rate_limiter() -> RateLimiter:
    """The process-wide limiter: Redis when settings.REDIS_URL is set, else in-process."""
    from django.conf import settings

    url = getattr(settings, "REDIS_URL", None) or ""
    with _default_lock:
        limiter = _default.get(url)
        if limiter is None:
            limiter = RedisRateLimiter.from_url(url) if url else InProcessRateLimiter()
            _default[url] = limiter
        return limiter
