"""The per-token limiter: sliding window, pauses, in-process and shared through Redis."""

from __future__ import annotations

import threading

import pytest

from tests.support.redis_db import delete_prefix, redis_or_skip, unique_prefix
from vpp.apple.ratelimit import InProcessRateLimiter, RateLimitPaused, RedisRateLimiter, token_key


class FakeClock:
    def __init__(self):
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def test_it_keys_on_a_hash_never_the_token():
    key = token_key("my-secret-token")
    assert "my-secret-token" not in key
    assert key == token_key("my-secret-token") != token_key("other-token")


def test_it_spaces_requests_window_over_rate_apart_per_key():
    clock = FakeClock()
    limiter = InProcessRateLimiter(window=1.2, clock=clock, sleep=clock.sleep)
    stamps = []
    for _ in range(4):
        limiter.acquire("k", rate=3)
        stamps.append(clock.now)
    assert stamps == pytest.approx([1000.0, 1000.4, 1000.8, 1001.2])
    limiter.acquire("other", rate=3)  # another token has its own schedule
    assert clock.now == pytest.approx(1001.2)


def test_it_does_not_queue_past_the_callers_limit():
    clock = FakeClock()
    limiter = InProcessRateLimiter(window=1.0, clock=clock, sleep=clock.sleep)
    limiter.acquire("k", rate=1)
    with pytest.raises(RateLimitPaused):
        limiter.acquire("k", rate=1, max_wait=0.5)
    limiter.acquire("k", rate=1, max_wait=1.0)
    assert clock.now == pytest.approx(1001.0)


def test_it_pauses_every_caller_of_the_key_and_never_shortens_a_pause():
    clock = FakeClock()
    limiter = InProcessRateLimiter(clock=clock, sleep=clock.sleep)
    limiter.pause("k", 30)
    limiter.pause("k", 5)
    assert limiter.paused_for("k") == pytest.approx(30)
    assert limiter.paused_for("other") == 0
    limiter.acquire("k", rate=10)
    assert clock.now >= 1030.0


def test_it_raises_when_a_pause_is_longer_than_the_caller_may_wait():
    clock = FakeClock()
    limiter = InProcessRateLimiter(clock=clock, sleep=clock.sleep)
    limiter.pause("k", 120)
    with pytest.raises(RateLimitPaused) as info:
        limiter.acquire("k", rate=10, max_wait=10)
    assert info.value.wait == pytest.approx(120)
    assert clock.sleeps == []


def test_concurrent_reservations_get_distinct_evenly_spaced_slots():
    limiter = InProcessRateLimiter(window=1.0, clock=lambda: 0.0)  # time stands still
    waits: list[float] = []
    lock = threading.Lock()

    def worker():
        for _ in range(50):
            wait, reserved = limiter._reserve("k", 0.25, float("inf"))
            assert reserved
            with lock:
                waits.append(wait)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(waits) == [i * 0.25 for i in range(200)]


@pytest.fixture
def redis_limiter():
    client = redis_or_skip()
    prefix = unique_prefix()
    yield RedisRateLimiter(client, window=0.3, prefix=prefix)
    delete_prefix(client, prefix)


def test_it_shares_the_schedule_through_redis(redis_limiter):
    other = RedisRateLimiter(redis_limiter.redis, window=10, prefix=redis_limiter.prefix)  # "another process"
    mine = RedisRateLimiter(redis_limiter.redis, window=10, prefix=redis_limiter.prefix)
    sleeps: list[float] = []
    other._sleep = mine._sleep = sleeps.append  # record the waits instead of sleeping
    mine.acquire("k", rate=2)  # one slot every 5 s
    other.acquire("k", rate=2)
    mine.acquire("k", rate=2)
    assert sleeps == [pytest.approx(5, abs=0.5), pytest.approx(10, abs=0.5)]
    mine.acquire("elsewhere", rate=2)
    assert len(sleeps) == 2
    with pytest.raises(RateLimitPaused):
        other.acquire("k", rate=2, max_wait=1)  # the next slot is ~15 s away


def test_a_pause_that_starts_while_waiting_requeues_after_it():
    clock = FakeClock()
    limiter = InProcessRateLimiter(window=1.0, clock=clock, sleep=clock.sleep)
    limiter.acquire("k", rate=1)
    real_sleep = clock.sleep

    def sleep_and_get_paused(seconds):
        real_sleep(seconds)
        if len(clock.sleeps) == 1:
            limiter.pause("k", 10)  # another caller got a Retry-After meanwhile

    limiter._sleep = sleep_and_get_paused
    limiter.acquire("k", rate=1)
    assert clock.now == pytest.approx(1011.0)


def test_it_shares_pauses_through_redis_and_keeps_the_longest(redis_limiter):
    other = RedisRateLimiter(redis_limiter.redis, window=0.3, prefix=redis_limiter.prefix)
    redis_limiter.pause("k", 60)
    other.pause("k", 1)
    assert 59 <= other.paused_for("k") <= 60
    with pytest.raises(RateLimitPaused):
        other.acquire("k", rate=5, max_wait=5)
    assert other.paused_for("unrelated") == 0
    pause_keys = list(redis_limiter.redis.scan_iter(f"{redis_limiter.prefix}:pause:*"))
    assert pause_keys and all(token_key("x") not in k.decode() for k in pause_keys)
