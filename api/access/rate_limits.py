"""Token buckets per key (or per address, for failed authentications): a caller may burst, then
send at its steady rate; past that, 429."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

MOST_BUCKETS = 100_000


@dataclass
class _Bucket:
    tokens: float
    at: float


class TokenBuckets:
    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate_per_s
        self._burst = burst
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Take one token for ``key``: 0 if there was one, else the seconds until there is."""
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= MOST_BUCKETS:
                    self._forget_refilled(now)
                bucket = self._buckets[key] = _Bucket(float(self._burst), now)
            bucket.tokens = min(float(self._burst), bucket.tokens + (now - bucket.at) * self._rate)
            bucket.at = now
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return 0.0
            return (1 - bucket.tokens) / self._rate

    def wait_s(self, key: str) -> float:
        """The seconds until ``key`` has a token again, without taking one (0 if it has one)."""
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                return 0.0
            tokens = min(float(self._burst), bucket.tokens + (now - bucket.at) * self._rate)
            return 0.0 if tokens >= 1 else (1 - tokens) / self._rate

    def _forget_refilled(self, now: float) -> None:
        """Buckets that have refilled since are as good as new: forget them (keyed by address,
        buckets would otherwise grow with every address that ever called)."""
        self._buckets = {
            key: bucket
            for key, bucket in self._buckets.items()
            if bucket.tokens + (now - bucket.at) * self._rate < self._burst
        }


def retry_after_header(wait_s: float) -> int:
    """Whole seconds, at least one: ``Retry-After`` carries no fractions."""
    return max(1, math.ceil(wait_s))
