"""Per-key rate limiting: one token bucket per API key (``rate`` requests/s, bursts up to ``burst``)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class TokenBucketLimiter:
    """``acquire(key)`` takes one token from ``key``'s bucket and returns 0.0, or, when the bucket is empty,
    takes nothing and returns the seconds until a token is available (the ``Retry-After``).

    Buckets start full. ``rate`` > 0 tokens per second refill each bucket up to ``burst``. ``clock`` is
    injectable for tests. ``max_keys`` bounds the buckets kept (keys from clients, e.g. their addresses):
    the least recently used bucket is dropped first, which for a bucket that has refilled loses nothing.
    """

    def __init__(
        self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic, max_keys: int | None = None
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be > 0 requests/s, got {rate}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst}")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def _refilled(self, key: str) -> _Bucket:
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(tokens=float(self.burst), stamp=now)
            if self.max_keys is not None and len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.stamp) * self.rate)
        bucket.stamp = now
        return bucket

    def wait(self, key: str) -> float:
        """Seconds until ``key``'s bucket holds a token (0.0: it holds one now); takes nothing."""
        bucket = self._refilled(key)
        return 0.0 if bucket.tokens >= 1.0 else (1.0 - bucket.tokens) / self.rate

    def acquire(self, key: str) -> float:
        bucket = self._refilled(key)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate
