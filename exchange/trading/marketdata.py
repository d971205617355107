"""Market data: best-N depth from the engine, trades, OHLC and daily statistics from the trade record."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from exchange.core.runtime import Runtime
from exchange.core.units import cny, iso, quantity
from exchange.registry import repository as registry
from exchange.trading import repository
from exchange.trading.models import Candle, ClosePrice, DailyStat, Market, PublicTrade, Trade

INTERVALS = {"1m": 60_000_000, "5m": 300_000_000, "1h": 3_600_000_000, "1d": 86_400_000_000}


ALL_LEVELS = 1 << 31  # depth "all": every level of the book

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class InUnits(Generic[T]):
    """Rows of one instrument, with the decimals its quantities are written in."""

    decimals: int
    items: list[T]


def depth(rt: Runtime, market_id: str, levels: int = 5) -> dict[str, Any]:
    return depth_of(_followed(rt, market_id), levels)


@runtime_checkable
class Followed(Protocol):
    """What market data reads of a market's sequencer (exchange.trading.pipeline.MarketSequencer) or, on a read
    replica, of its follower (exchange.trading.replica.MarketFollower): both import this module, so it names
    neither (exchange/trading/running.py is where trading reaches them by type)."""

    applied_seq: int

    @property
    def market(self) -> Market: ...

    def depth(self, levels: int = 5) -> dict[str, list[tuple[int, int, int]]]: ...


def _followed(rt: Runtime, market_id: str) -> Followed:
    seq = rt.exchange.get(market_id)  # NotFound (404) for a market that does not run here
    assert isinstance(seq, Followed), type(seq)
    return seq


def depth_of(seq: Followed, levels: int) -> dict[str, Any]:
    """A sequencer's book by price level, as REST answers and the stream send it (no one is named)."""
    d = seq.market.decimals
    book = seq.depth(levels)

    def side(levels: list[tuple[int, int, int]]) -> list[dict[str, Any]]:
        return [{"price": cny(p), "quantity": quantity(q, d), "orders": n} for p, q, n in levels]

    return {"market_id": seq.market.id, "seq": seq.applied_seq, "bids": side(book["bids"]),
            "asks": side(book["asks"])}


def trade_view(t: PublicTrade, decimals: int) -> dict[str, Any]:
    """A trade as the public sees it (list and stream alike): no participant, no order of anyone's."""
    return {"trade_id": t.trade_id, "seq": t.seq, "ts": iso(t.ts), "mode": t.mode, "price": cny(t.price),
            "quantity": quantity(t.qty, decimals), "amount": cny(t.notional), "trading_day": t.trading_day}


def trade_message(t: Trade, taker_side: str, decimals: int) -> dict[str, Any]:
    """The stream's message for a trade the sequencer is settling (exchange/trading/settlement.py makes it)."""
    view = trade_view(PublicTrade.of(t), decimals)
    return {"type": "trade", **view, "trading_day": t.trading_day.isoformat(), "taker_side": taker_side}


# Lists return one item more than `limit` when more follow (the caller pages: api/paging.py).


async def trades(rt: Runtime, market_id: str, after: int, limit: int) -> InUnits[PublicTrade]:
    """Trades in trade id order, after the trade id `after`."""
    seq = _followed(rt, market_id)
    async with rt.read() as conn:
        return InUnits(seq.market.decimals, await repository.public_trades(conn, market_id, after, limit + 1))


async def ohlc(rt: Runtime, market_id: str, interval: str, limit: int, before: int | None = None,
               ) -> InUnits[Candle]:
    """Candles newest first, each starting before `before` (a candle start) when given."""
    seq = _followed(rt, market_id)
    async with rt.read() as conn:
        rows = await repository.candles(conn, market_id, INTERVALS[interval],
                                        2**63 - 1 if before is None else before, limit + 1)
    return InUnits(seq.market.decimals, rows)


async def _decimals(rt: Runtime, instrument: str) -> int:
    async with rt.read() as conn:
        inst = await registry.instrument(conn, instrument)
    return 0 if inst is None else inst.decimals  # an unknown instrument has no rows either


async def daily(rt: Runtime, instrument: str, limit: int, before: tuple[str, str] | None = None,
                ) -> InUnits[DailyStat]:
    """Per trading day and mode: OHLC, volume, turnover; and the official close (VWAP of in-close trades).
    Newest day first, modes in name order; after the (day, mode) `before` when given."""
    after = (date.fromisoformat(before[0]), before[1]) if before is not None else (date.max, "")
    decimals = await _decimals(rt, instrument)
    async with rt.read() as conn:
        return InUnits(decimals, await repository.daily_stats(conn, instrument, after, limit + 1))


async def closes(rt: Runtime, instrument: str, limit: int, before: str | None = None) -> InUnits[ClosePrice]:
    """Close prices newest day first, before the day `before` when given."""
    decimals = await _decimals(rt, instrument)
    async with rt.read() as conn:
        return InUnits(decimals, await repository.close_prices(
            conn, instrument, date.max if before is None else date.fromisoformat(before), limit + 1))
