"""How many market streams (WebSockets) are open, per client address and in all.

Each stream is a task and a target of every trade and depth message of its market, so one client
opening a thousand of them multiplies the work of every market event (red team round 4, F11). The rate
limit counts requests, not open connections: these slots count connections.
"""

from __future__ import annotations

from collections import Counter


class StreamSlots:
    def __init__(self, per_address: int, total: int) -> None:
        self.per_address, self.total = per_address, total
        self._open: Counter[str] = Counter()

    def take(self, address: str) -> bool:
        if self._open[address] >= self.per_address or sum(self._open.values()) >= self.total:
            return False
        self._open[address] += 1
        return True

    def give(self, address: str) -> None:
        self._open[address] -= 1
        if self._open[address] <= 0:
            del self._open[address]
