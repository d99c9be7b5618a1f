"""Request-rate limiting for Apple's VPP service, per content token (no HTTP here).

Apple allows ``maxRequestPerSecond`` requests per second *per location / sToken* (Service
Config, apple-vpp-api.md §2.2, §4), and calling again before a ``Retry-After`` has passed
can extend the block or get the organisation suspended (§4, §8.8). Both rules concern the
token, not one worker, so:

* ``RedisRateLimiter`` shares a sliding-window log and a "pause until" mark between every
  process that uses the same Redis (web, workers, beat, several machines). Both live in
  atomic Lua scripts and use Redis' own clock, so processes with skewed clocks agree.
* ``InProcessRateLimiter`` does the same inside one process (threads) for the embedded
  single-machine setup without Redis.

Keys are a hash of the token (``token_key``), never the token itself: Redis keys show up
in MONITOR output, slow logs and dumps.

The window is slightly longer than one second (``DEFAULT_WINDOW``): a request admitted
here reaches Apple a few milliseconds later, and uneven network/scheduling delays could
otherwise put ``rate + 1`` arrivals inside one of Apple's seconds.
"""

from __future__ import annotations

import collections
import hashlib
import random
import threading
import time
import uuid
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


def _small_jitter() -> float:
    # Spreads waiters that wake for the same freed slot, so they don't all retry at once.
    return random.uniform(0, 0.005)


class InProcessRateLimiter:
    """Thread-safe sliding-window limiter for one process."""

    def __init__(self, *, window: float = DEFAULT_WINDOW, clock=time.monotonic, sleep=time.sleep):
        self.window = window
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._sent: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
        self._pause_until: dict[str, float] = {}

    def _try(self, key: str, rate: int) -> tuple[bool, float, bool]:
        """(admitted, wait seconds, wait is a pause)."""
        with self._lock:
            now = self._clock()
            pause = self._pause_until.get(key, 0.0) - now
            if pause > 0:
                return False, pause, True
            sent = self._sent[key]
            while sent and sent[0] <= now - self.window:
                sent.popleft()
            if len(sent) < rate:
                sent.append(now)
                return True, 0.0, False
            return False, sent[0] + self.window - now, False

    def acquire(self, key: str, *, rate: int, max_wait: float = float("inf")) -> None:
        rate = max(1, int(rate))
        deadline = self._clock() + max_wait
        while True:
            admitted, wait, is_pause = self._try(key, rate)
            if admitted:
                return
            if is_pause and self._clock() + wait > deadline:
                raise RateLimitPaused(wait)
            self._sleep(max(wait, 0.001) + _small_jitter())

    def pause(self, key: str, seconds: float) -> None:
        with self._lock:
            until = self._clock() + max(0.0, seconds)
            self._pause_until[key] = max(self._pause_until.get(key, 0.0), until)

    def paused_for(self, key: str) -> float:
        with self._lock:
            return max(0.0, self._pause_until.get(key, 0.0) - self._clock())


# Sliding-window log in a sorted set, scored by Redis' clock in milliseconds. Milliseconds
# (13 digits) rather than microseconds because Lua 5.1 turns numbers into strings with
# "%.14g" when passing them to redis.call, which would round 16-digit values.
_ACQUIRE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local pause_until = tonumber(redis.call('GET', KEYS[2]) or '0')
if pause_until > now then
  return {0, pause_until - now, 1}
end
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window * 2)
  return {1, 0, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, tonumber(oldest[2]) + window - now, 0}
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
    """Sliding-window limiter and pause mark shared through Redis (atomic Lua scripts)."""

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
        return f"{self.prefix}:rl:{key}", f"{self.prefix}:pause:{key}"

    def acquire(self, key: str, *, rate: int, max_wait: float = float("inf")) -> None:
        window_ms = int(self.window * 1000)
        keys = self._keys(key)
        deadline = time.monotonic() + max_wait
        while True:
            admitted, wait_ms, is_pause = self._acquire(
                keys=keys, args=[max(1, int(rate)), window_ms, uuid.uuid4().hex]
            )
            if admitted:
                return
            wait = max(int(wait_ms), 1) / 1000
            if is_pause and time.monotonic() + wait > deadline:
                raise RateLimitPaused(wait)
            self._sleep(wait + _small_jitter())

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
