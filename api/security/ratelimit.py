"""Token buckets in memory: per API key, and per client address for requests without a valid key.

One process serves the API (the ledger has one writer), so in-memory buckets are exact; several
read-only replicas would each allow the full rate. A refused request costs no token.
"""

from __future__ import annotations

import math
import time
from collections.abc import Hashable


class TokenBuckets:
    MAX_BUCKETS = 100_000  # beyond this, idle buckets (full again anyway) are dropped

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._buckets: dict[Hashable, list[float]] = {}  # key -> [tokens, last refill (monotonic)]

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, key: Hashable, now: float | None = None) -> float:
        """Spend one token. Returns 0 if allowed, else the seconds until one is available."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        b = self._buckets.get(key)
        if b is None:
            if len(self._buckets) >= self.MAX_BUCKETS:
                self._prune(now)
            self._buckets[key] = [self.burst - 1.0, now]
            return 0.0
        tokens = min(self.burst, b[0] + (now - b[1]) * self.rate)
        b[1] = now
        if tokens >= 1.0:
            b[0] = tokens - 1.0
            return 0.0
        b[0] = tokens
        return (1.0 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        full_after = self.burst / self.rate
        for k, (_, last) in list(self._buckets.items()):
            if now - last >= full_after:
                del self._buckets[k]
        if len(self._buckets) >= self.MAX_BUCKETS:  # all busy: forget the lot rather than grow without bound
            self._buckets.clear()

    def reset(self) -> None:
        self._buckets.clear()


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
