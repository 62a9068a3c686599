"""Token buckets: `rate` requests per second on average, up to `burst` at once.

One bucket per key (a push token's name, a client address). Buckets that have
refilled completely are the same as no bucket, so they are dropped when the
table grows: memory stays bounded whatever keys clients make up.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

MAX_KEYS = 10_000


class TokenBucket:
    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int, now: float):
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def take(self, now: float) -> float:
        """0.0 when a request may go now (and counts it); else the seconds until one may."""
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate

    def full(self, now: float) -> bool:
        self._refill(now)
        return self.tokens >= self.burst


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic, max_keys: int = MAX_KEYS):
        self.clock = clock
        self.max_keys = max_keys
        self.buckets: dict[str, TokenBucket] = {}

    def take(self, key: str, rate: float, burst: int) -> float:
        """0.0 when `key` may go now; else the seconds to wait. A changed rate or burst
        (a reloaded config) starts the key's bucket afresh."""
        now = self.clock()
        bucket = self.buckets.get(key)
        if bucket is None or (bucket.rate, bucket.burst) != (rate, burst):
            if bucket is None and len(self.buckets) >= self.max_keys:
                self._forget_full(now)
            bucket = self.buckets[key] = TokenBucket(rate, burst, now)
        return bucket.take(now)

    def give_back(self, key: str) -> None:
        """Undo the last take() that let `key` go (its request is handed to another
        check that takes it again): as if it had not been taken."""
        bucket = self.buckets.get(key)
        if bucket is not None:
            bucket.tokens = min(float(bucket.burst), bucket.tokens + 1.0)

    def _forget_full(self, now: float) -> None:
        for key in [k for k, b in self.buckets.items() if b.full(now)]:
            del self.buckets[key]
        if len(self.buckets) >= self.max_keys:
            # Every key is busy: the oldest go. A client among them merely gets a fresh burst.
            for key in list(self.buckets)[: len(self.buckets) // 2]:
                del self.buckets[key]


def retry_after(seconds: float) -> int:
    """Retry-After takes whole seconds: round up, so that a client that waits that long
    is let through."""
    return max(1, math.ceil(seconds))
