"""The per-token limiter: request spacing and pauses, shared through Redis by every process."""

from __future__ import annotations

import threading
import time

import pytest

from tests.support.redis_db import delete_prefix, rate_limiter
from vpp.apple.ratelimit import RateLimitPaused, RedisRateLimiter, token_key


def test_it_keys_on_a_hash_never_the_token():
    key = token_key("my-secret-token")
    assert "my-secret-token" not in key
    assert key == token_key("my-secret-token") != token_key("other-token")


@pytest.fixture
def limiter():
    """A limiter of its own on the suite's Redis that records its waits instead of sleeping."""
    limiter = rate_limiter(window=12)
    limiter.sleeps = []
    limiter._sleep = limiter.sleeps.append
    yield limiter
    delete_prefix(limiter.redis, limiter.prefix)


def another_process(limiter, **kwargs):
    """A second limiter on the same Redis and prefix, as another worker process would have."""
    other = RedisRateLimiter(limiter.redis, prefix=limiter.prefix, **{"window": limiter.window, **kwargs})
    other._sleep = limiter._sleep
    return other


# Waits are computed on Redis' clock while this test runs in real time: windows of several
# seconds keep the few milliseconds between calls inside the tolerance on a loaded machine.
def test_it_spaces_requests_window_over_rate_apart_per_key(limiter):
    for _ in range(4):
        limiter.acquire("k", rate=3)  # one slot every 4 s; the first is now
    assert limiter.sleeps == [pytest.approx(4, abs=0.5), pytest.approx(8, abs=0.5), pytest.approx(12, abs=0.5)]
    limiter.acquire("other", rate=3)  # another token has its own schedule
    assert len(limiter.sleeps) == 3


def test_it_does_not_queue_past_the_callers_limit(limiter):
    limiter.acquire("k", rate=1)
    with pytest.raises(RateLimitPaused) as info:
        limiter.acquire("k", rate=1, max_wait=5)
    assert info.value.wait == pytest.approx(12, abs=0.5)
    limiter.acquire("k", rate=1, max_wait=13)
    assert limiter.sleeps == [pytest.approx(12, abs=0.5)]


def test_it_pauses_every_caller_of_the_key_and_never_shortens_a_pause(limiter):
    limiter.pause("k", 30)
    another_process(limiter).pause("k", 5)
    assert another_process(limiter).paused_for("k") == pytest.approx(30, abs=0.5)
    assert limiter.paused_for("other") == 0


def test_it_raises_when_a_pause_is_longer_than_the_caller_may_wait(limiter):
    limiter.pause("k", 120)
    with pytest.raises(RateLimitPaused) as info:
        another_process(limiter).acquire("k", rate=10, max_wait=10)
    assert info.value.wait == pytest.approx(120, abs=0.5)
    assert limiter.sleeps == []


def test_an_acquire_waits_out_a_pause_in_real_time(limiter):
    limiter._sleep = time.sleep
    limiter.pause("k", 0.5)
    started = time.monotonic()
    limiter.acquire("k", rate=10)
    assert time.monotonic() - started >= 0.45  # Redis' clock in ms: at most 1 ms early


def test_concurrent_reservations_get_distinct_evenly_spaced_slots(limiter):
    waits: list[float] = []
    lock = threading.Lock()

    def worker():
        mine = another_process(limiter)
        for _ in range(50):
            wait, reserved = mine._reserve("k", 10.0, float("inf"))
            assert reserved
            with lock:
                waits.append(wait)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Slot i is 10 * i seconds after the first; the calls themselves take far less than 5 s.
    assert sorted(round(w / 10) for w in waits) == list(range(200))


def test_it_shares_the_schedule_through_redis(limiter):
    other, mine = another_process(limiter, window=10), another_process(limiter, window=10)
    mine.acquire("k", rate=2)  # one slot every 5 s
    other.acquire("k", rate=2)
    mine.acquire("k", rate=2)
    assert limiter.sleeps == [pytest.approx(5, abs=0.5), pytest.approx(10, abs=0.5)]
    mine.acquire("elsewhere", rate=2)
    assert len(limiter.sleeps) == 2
    with pytest.raises(RateLimitPaused):
        other.acquire("k", rate=2, max_wait=1)  # the next slot is ~15 s away


def test_a_pause_that_starts_while_waiting_requeues_after_it(limiter):
    limiter.acquire("k", rate=1)

    def sleep(seconds):
        limiter.sleeps.append(seconds)
        if len(limiter.sleeps) == 1:
            another_process(limiter).pause("k", 30)  # another caller got a Retry-After meanwhile
        else:
            limiter.redis.delete(f"{limiter.prefix}:pause:k")  # ... and the pause is over

    limiter._sleep = sleep
    limiter.acquire("k", rate=1)
    assert limiter.sleeps == [pytest.approx(12, abs=0.5), pytest.approx(30, abs=0.5)]


def test_it_shares_pauses_through_redis_and_keeps_the_longest(limiter):
    other = another_process(limiter)
    limiter.pause("k", 60)
    other.pause("k", 1)
    assert 59 <= other.paused_for("k") <= 60
    with pytest.raises(RateLimitPaused):
        other.acquire("k", rate=5, max_wait=5)
    assert other.paused_for("unrelated") == 0
    pause_keys = list(limiter.redis.scan_iter(f"{limiter.prefix}:pause:*"))
    assert pause_keys and all(token_key("x") not in k.decode() for k in pause_keys)
