"""Token-bucket rate limits per key (client address, room, connection).

Minimal version written by the datapath helper to the team contract
`RateLimiter(rate, burst).allow(key) -> float | None`; the rooms helper owns this module.
"""

from __future__ import annotations

import time
from collections.abc import Callable

MAX_KEYS = 10_000


class RateLimiter:
    """`rate` tokens per second, at most `burst` saved up, per key."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def allow(self, key: str) -> float | None:
        """None when allowed (a token is taken); else the seconds until the next token."""
        now = self.clock()
        tokens, at = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        if tokens >= 1.0:
            if len(self._buckets) >= MAX_KEYS and key not in self._buckets:
                self._buckets.pop(next(iter(self._buckets)))  # oldest key: memory stays bounded
            self._buckets[key] = (tokens - 1.0, now)
            return None
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate
