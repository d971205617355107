"""Market data derived from engine events: trades, OHLC, bars, daily statistics and the close.

Pure: a `MarketData` is fed the events an engine returned (in order) and answers from what it saw.
Block and auction trades are counted in the day's statistics per mode but kept out of the real-time
quote (last, OHLC, bars); the close is the VWAP of the day's listing trades (§6), falling back to the
previous close when there were none. Depth comes from the engine itself (`depth(engine)`).
"""

from __future__ import annotations

from typing import Any, Protocol

from .events import CONTINUOUS, LISTING, TRADE, Event

QUOTE_MODES = (CONTINUOUS, LISTING)
CLOSE_MODES = (LISTING,)


class HasDepth(Protocol):
    def depth(self, levels: int = 5) -> dict[str, list[tuple[int, int, int]]]: ...


def depth(engine: HasDepth, levels: int = 5) -> dict[str, list[tuple[int, int, int]]]:
    """Best `levels` (default 5) levels per side as (price, qty, count), best first."""
    return engine.depth(levels)


def vwap(turnover: int, volume: int, tick: int = 1) -> int:
    """turnover / volume rounded half up to the nearest multiple of `tick`, in integers only."""
    if volume <= 0:
        raise ValueError("no volume")
    return (2 * turnover + tick * volume) // (2 * tick * volume) * tick


class MarketData:
    __slots__ = (
        "_bar",
        "bar_interval",
        "bars",
        "by_mode",
        "close_modes",
        "close_turnover",
        "close_volume",
        "high",
        "last",
        "low",
        "open",
        "previous_close",
        "quote_modes",
        "tick",
        "trades",
        "turnover",
        "volume",
    )

    def __init__(
        self,
        previous_close: int | None = None,
        tick: int = 1,
        bar_interval: int | None = None,
        quote_modes: tuple[str, ...] = QUOTE_MODES,
        close_modes: tuple[str, ...] = CLOSE_MODES,
    ) -> None:
        self.previous_close = previous_close
        self.tick = tick
        self.bar_interval = bar_interval
        self.quote_modes = quote_modes
        self.close_modes = close_modes
        self.trades: list[Event] = []
        self.open: int | None = None
        self.high: int | None = None
        self.low: int | None = None
        self.last: int | None = None
        self.volume = 0  # quote modes only
        self.turnover = 0
        self.close_volume = 0
        self.close_turnover = 0
        self.by_mode: dict[str, list[int]] = {}  # mode -> [trades, volume, turnover], first-seen order
        self.bars: list[list[int]] = []  # [start ts, open, high, low, close, volume]
        self._bar: list[int] | None = None

    def apply(self, events: list[Event]) -> None:
        for e in events:
            if e[0] == TRADE:
                self._trade(e)

    def _trade(self, e: Event) -> None:
        mode, ts, price, qty = e[1], e[3], e[5], e[6]
        self.trades.append(e)
        stats = self.by_mode.setdefault(mode, [0, 0, 0])
        stats[0] += 1
        stats[1] += qty
        stats[2] += price * qty
        if mode in self.close_modes:
            self.close_volume += qty
            self.close_turnover += price * qty
        if mode not in self.quote_modes:
            return
        if self.open is None:
            self.open = self.high = self.low = price
        else:
            self.high = max(self.high, price)
            self.low = min(self.low, price)
        self.last = price
        self.volume += qty
        self.turnover += price * qty
        if self.bar_interval:
            start = ts - ts % self.bar_interval
            bar = self._bar
            if bar is None or bar[0] != start:
                bar = [start, price, price, price, price, 0]
                self.bars.append(bar)
                self._bar = bar
            bar[2] = max(bar[2], price)
            bar[3] = min(bar[3], price)
            bar[4] = price
            bar[5] += qty

    def close(self) -> int | None:
        """VWAP of the close-mode trades on the tick grid; the previous close if there were none."""
        if self.close_volume:
            return vwap(self.close_turnover, self.close_volume, self.tick)
        return self.previous_close

    def ohlc(self) -> dict[str, Any]:
        return {
            "open": self.open,
            "high": self.high,
            "low": self.low,
            "last": self.last,
            "volume": self.volume,
            "turnover": self.turnover,
            "close": self.close(),
            "previous_close": self.previous_close,
        }

    def statistics(self) -> dict[str, dict[str, int]]:
        """Per trade mode: count, volume and turnover (block and auction included)."""
        return {mode: {"trades": s[0], "volume": s[1], "turnover": s[2]} for mode, s in self.by_mode.items()}
