"""The token bucket with an injected clock: no sleeping, no timing assertions."""

from __future__ import annotations

import pytest

from babelroom.ratelimit import RateLimiter, retry_after


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refusal_with_the_wait_until_the_next_token() -> None:
    clock = Clock()
    rl = RateLimiter(rate=0.5, burst=3, clock=clock)
    assert [rl.allow("a") for _ in range(3)] == [None, None, None]
    wait = rl.allow("a")
    assert wait == pytest.approx(2.0)  # one token per 2 s
    clock.now += 1.0
    assert rl.allow("a") == pytest.approx(1.0)  # refused calls do not spend anything
    clock.now += 1.0
    assert rl.allow("a") is None
    assert rl.allow("a") is not None


def test_keys_are_independent_and_refill_caps_at_burst() -> None:
    clock = Clock()
    rl = RateLimiter(rate=1.0, burst=2, clock=clock)
    assert rl.allow("a") is None and rl.allow("a") is None and rl.allow("a") is not None
    assert rl.allow("b") is None  # another address still has its burst
    clock.now += 3600
    assert [rl.allow("a") for _ in range(3)][:2] == [None, None]
    assert rl.allow("a") is not None  # an idle hour gives back the burst, not 3600 tokens


def test_memory_stays_bounded_under_a_spread_of_keys() -> None:
    clock = Clock()
    rl = RateLimiter(rate=0.001, burst=1, clock=clock)
    rl.MAX_KEYS = 10
    assert rl.allow("busy") is None
    for i in range(50):
        rl.allow(f"k{i}")
    assert len(rl._buckets) <= 10
    # every bucket was busy, so pruning could only start over; the limiter keeps working
    assert rl.allow("fresh") is None


def test_bad_parameters_and_retry_after_rounding() -> None:
    with pytest.raises(ValueError):
        RateLimiter(rate=0, burst=1)
    with pytest.raises(ValueError):
        RateLimiter(rate=1, burst=0)
    assert retry_after(0.01) == "1" and retry_after(1.0) == "1" and retry_after(1.2) == "2"
