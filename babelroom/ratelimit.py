"""A token bucket per key: room creation and joins per client address and per room, chat per
connection. In-process on purpose: each worker limits what reaches it (a scaled-out app admits at
most workers x the rate; docs/deploy.md says where a global limit would live).
"""

from __future__ import annotations

import time
from collections.abc import Callable


class RateLimiter:
    """`burst` requests at once, refilled at `rate` per second; `allow(key)` spends one token.

    Returns None when allowed, else the seconds until a token is back (for Retry-After).
    """

    MAX_KEYS = 10_000  # beyond this, buckets that have refilled completely are forgotten

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def _tokens(self, key: str, now: float) -> float:
        tokens, at = self._buckets.get(key, (float(self.burst), now))
        return min(float(self.burst), tokens + max(0.0, now - at) * self.rate)

    def allow(self, key: str, cost: float = 1.0) -> float | None:
        """Spend `cost` tokens (1 for a request; seconds of audio for the speaker's pace)."""
        now = self.clock()
        tokens = self._tokens(key, now)
        if tokens >= cost:
            if len(self._buckets) >= self.MAX_KEYS and key not in self._buckets:
                self._prune(now)
            self._buckets[key] = (tokens - cost, now)
            return None
        self._buckets[key] = (tokens, now)
        return (cost - tokens) / self.rate

    def _prune(self, now: float) -> None:
        full = [k for k in self._buckets if self._tokens(k, now) >= self.burst]
        for k in full:
            del self._buckets[k]
        if len(self._buckets) >= self.MAX_KEYS:  # all busy: an attacker's spread of keys; start over
            self._buckets.clear()


def retry_after(seconds: float) -> str:
    """Retry-After in whole seconds, never 0 (a client retrying at once would be refused again)."""
    return str(max(1, int(seconds + 0.999)))
